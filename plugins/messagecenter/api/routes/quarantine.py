"""``/api/v1/quarantine``: read an address's quarantine state, list the addresses kept from sending,
and let operators add or release one (Campaign's statuses: valid, with_errors, quarantine,
denylisted)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from messagecenter.api.deps import ConnDep
from messagecenter.api.models import (
    ADDRESS_PATTERN,
    MAX_ADDRESS_CHARS,
    AddressState,
    AddressStates,
    ErrorMessage,
    QuarantineIn,
    QuarantineStatus,
    ValidationErrors,
)
from messagecenter.core.types import Channel, ChannelName
from messagecenter.feedback import quarantine
from messagecenter.feedback.quarantine import AddressStatus

router = APIRouter(prefix="/quarantine", tags=["quarantine"])

SOURCE = "api"  # what mc.quarantine.source says of a change made here
_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrors, "description": "Unknown channel or status, or an empty address"},
}
AddressQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_ADDRESS_CHARS,
        pattern=ADDRESS_PATTERN,
        description="e-mail address, phone number or push token",
    ),
]


def _public(state: quarantine.AddressState) -> AddressState:
    return AddressState.model_validate(state.as_dict())


def _address(channel: Channel, address: str, where: str) -> str:
    """The address as the quarantine keeps it; a blank one is refused naming the field."""
    try:
        return quarantine.normalise_address(channel, address)
    except ValueError as exc:
        loc = ["query", "address"] if where == "query" else ["body", "address"]
        raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": str(exc)}]) from None


@router.get(
    "",
    responses=_REFUSED,
    summary="One address's quarantine state (with address), or the addresses that are not valid",
)
def read_quarantine(
    conn: ConnDep,
    channel: ChannelName | None = None,
    address: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_ADDRESS_CHARS,
            pattern=ADDRESS_PATTERN,
            description="one address to read (else: the list)",
        ),
    ] = None,
    status: QuarantineStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> AddressState | AddressStates:
    if address is not None:
        which = Channel.parse(channel or "email")
        return _public(quarantine.get_state(conn, which, _address(which, address, "query")))
    states = quarantine.list_states(
        conn,
        channel=Channel.parse(channel) if channel else None,
        status=AddressStatus.from_name(status) if status else None,
        limit=limit,
    )
    return AddressStates(items=[_public(state) for state in states])


@router.post(
    "",
    responses={400: {"model": ErrorMessage, "description": "The body is not JSON"}, **_REFUSED},
    summary="Put an address in quarantine or on the denylist",
)
def add_to_quarantine(body: QuarantineIn, conn: ConnDep) -> AddressState:
    channel = Channel.parse(body.channel)
    address = _address(channel, body.address, "body")
    with conn.transaction():
        state = quarantine.set_status(
            conn, channel, address, AddressStatus.from_name(body.status), reason=body.reason, source=SOURCE
        )
    return _public(state)


@router.delete("", responses=_REFUSED, summary="Release an address (valid again)")
def release_from_quarantine(
    conn: ConnDep, address: AddressQuery, channel: ChannelName = "email"
) -> AddressState:
    which = Channel.parse(channel)
    with conn.transaction():
        state = quarantine.set_status(
            conn, which, _address(which, address, "query"), AddressStatus.VALID, source=SOURCE
        )
    return _public(state)
