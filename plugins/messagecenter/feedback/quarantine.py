"""The quarantine as Campaign runs it, per (channel, address): read, list, add, release, sync.

Statuses: Valid (0, a released address keeps its row so that the release reaches every instance),
With errors (1: soft errors counting), Quarantine (2: receives nothing), Denylisted (3: complaint,
one-click unsubscribe, operator; never released automatically). Deliveries to Quarantine and
Denylisted addresses are Ignored ("address in quarantine"). Feedback writes it through
:mod:`messagecenter.feedback.apply`; operators through the functions here (CLI and API).

A change seen on one execution instance reaches the others through control: ``publishTemplates``
merges every instance's changed rows into ``mc.quarantine_master`` (the newest change of an address
wins) and writes the master's changes back to every instance (:func:`sync_instance`).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from messagecenter.core.settings import FeedbackSettings
from messagecenter.core.types import Channel
from messagecenter.db.queries import query
from messagecenter.feedback.types import FailureReason

log = logging.getLogger(__name__)
# Rows changed this long before the last sync are read again: a change committed late is not missed
# (merging is idempotent: the newest change wins).
SYNC_OVERLAP = timedelta(minutes=5)


class AddressStatus(enum.IntEnum):
    """Campaign's quarantine statuses; the API names them in snake case."""

    VALID = 0
    WITH_ERRORS = 1
    QUARANTINE = 2
    DENYLISTED = 3

    @property
    def api_name(self) -> str:
        return self.name.lower()

    @classmethod
    def from_name(cls, name: str) -> AddressStatus:
        try:
            return cls[name.strip().upper().replace("-", "_")]
        except KeyError:
            names = ", ".join(s.api_name for s in cls)
            raise ValueError(f"unknown quarantine status {name!r}; use one of {names}") from None


@dataclass(frozen=True)
class AddressState:
    """One (channel, address) as the API and the CLI show it."""

    channel: str
    address: str
    status: AddressStatus
    errors: int = 0
    reason: str | None = None
    failure_reason: str | None = None
    last_error: datetime | None = None
    source: str | None = None
    updated: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "address": self.address,
            "status": self.status.api_name,
            "errors": self.errors,
            "reason": self.reason,
            "failure_reason": self.failure_reason,
            "last_error": self.last_error.isoformat() if self.last_error else None,
            "source": self.source,
            "updated": self.updated.isoformat() if self.updated else None,
        }


def normalise_address(channel: Channel, address: str) -> str:
    """E-mail addresses are kept lower-cased (Campaign's advice); phones and tokens as given."""
    address = address.strip()
    if not address:
        raise ValueError("address is empty")
    return address.lower() if channel == Channel.EMAIL else address


def _state(row: tuple[Any, ...]) -> AddressState:
    channel, address, status, errors, failure_reason, reason, last_error, source, _created, updated = row
    label = FailureReason(failure_reason).label if failure_reason is not None else None
    return AddressState(
        Channel(channel).label,
        address,
        AddressStatus(status),
        errors,
        reason,
        label,
        last_error,
        source,
        updated,
    )


def get_state(conn: psycopg.Connection[Any], channel: Channel, address: str) -> AddressState:
    """An address's quarantine state; Valid when it has none."""
    address = normalise_address(channel, address)
    row = conn.execute(query("get_quarantine"), {"channel": int(channel), "address": address}).fetchone()
    return _state(row) if row else AddressState(channel.label, address, AddressStatus.VALID)


def list_states(
    conn: psycopg.Connection[Any],
    *,
    channel: Channel | None = None,
    status: AddressStatus | None = None,
    limit: int = 100,
) -> list[AddressState]:
    """Addresses that are not Valid, newest change first."""
    params = {
        "channel": int(channel) if channel is not None else None,
        "status": int(status) if status is not None else None,
        "limit": limit,
    }
    return [_state(row) for row in conn.execute(query("list_quarantine"), params)]


def set_status(
    conn: psycopg.Connection[Any],
    channel: Channel,
    address: str,
    status: AddressStatus,
    *,
    reason: str | None = None,
    source: str = "operator",
) -> AddressState:
    """Put an address in a status by hand (add to quarantine, denylist) or release it (Valid)."""
    address = normalise_address(channel, address)
    params = {"channel": int(channel), "address": address, "status": int(status), "reason": reason}
    conn.execute(query("set_quarantine"), {**params, "source": source})
    log.info("Quarantine: %s %s set to %s by %s", channel.label, address, status.api_name, source)
    return get_state(conn, channel, address)


def release_automatically(conn: psycopg.Connection[Any], rules: FeedbackSettings) -> int:
    """Campaign's cleanup: With errors without error for the reset delay, and Mailbox full after its delay."""
    cur = conn.execute(
        query("release_quarantine_automatically"),
        {
            "reset_seconds": rules.reset_after.total_seconds(),
            "mailbox_full_seconds": rules.mailbox_full_release.total_seconds(),
        },
    )
    if cur.rowcount:
        log.info("Quarantine: %d addresses released automatically", cur.rowcount)
    return cur.rowcount


def forget_unmatched(conn: psycopg.Connection[Any], older_than_seconds: float) -> int:
    """Drop the kept feedback that found no delivery log for this long."""
    return conn.execute(query("purge_unmatched_feedback"), {"seconds": older_than_seconds}).rowcount


def status_counts(conn: psycopg.Connection[Any]) -> dict[str, dict[str, int]]:
    """Addresses per status and failure reason (what the page and the doctor show)."""
    counts: dict[str, dict[str, int]] = {}
    for status, reason, n in conn.execute(query("quarantine_counts")):
        per_reason = counts.setdefault(AddressStatus(status).api_name, {})
        per_reason[FailureReason(reason).label] = n
    return counts


_SYNC_COLUMNS = (
    "channel",
    "address",
    "status",
    "errors",
    "failure_reason",
    "reason",
    "last_error",
    "source",
    "updated",
)


def _columns(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    return {name: [row[i] for row in rows] for i, name in enumerate(_SYNC_COLUMNS)}


def sync_instance(
    control: psycopg.Connection[Any], execution: psycopg.Connection[Any], instance: str
) -> tuple[int, int]:
    """Merge one instance's quarantine changes into control's master and write the master's back.

    Returns (rows read from the instance, rows written to it). Call it for every instance in turn:
    a change seen on one reaches the others at their next turn.
    """
    with control.transaction():
        state = control.execute(query("get_quarantine_sync"), {"instance": instance}).fetchone()
        pulled_since = state[0] - SYNC_OVERLAP if state else None
        pushed_since = state[1] - SYNC_OVERLAP if state else None
        pulled = execution.execute(query("changed_quarantine"), {"since": pulled_since}).fetchall()
        if pulled:
            control.execute(query("merge_quarantine_master"), {**_columns(pulled), "instance": instance})
        pushed = control.execute(query("changed_quarantine_master"), {"since": pushed_since}).fetchall()
        if pushed:
            with execution.transaction():
                execution.execute(query("merge_quarantine"), _columns(pushed))
        pulled_until = max([row[8] for row in pulled], default=state[0] if state else None)
        pushed_until = max([row[8] for row in pushed], default=state[1] if state else None)
        if pulled_until is not None or pushed_until is not None:
            control.execute(
                query("set_quarantine_sync"),
                {
                    "instance": instance,
                    "pulled_until": pulled_until or pushed_until,
                    "pushed_until": pushed_until or pulled_until,
                },
            )
    if pulled or pushed:
        log.info("Quarantine sync with %s: %d changes read, %d written", instance, len(pulled), len(pushed))
    return len(pulled), len(pushed)
