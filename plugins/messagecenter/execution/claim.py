"""Claim: lock a shard's due events chunk by chunk, as rows of :class:`ClaimedEvent`.

The claim runs in the chunk's transaction and its row locks are the lease (see ``deliver``): the
transaction first gets the lease timeout, then ``claim_for_delivery`` locks the next chunk after
the last event claimed (keyset on due time and id). An event that already has a final delivery
log (a crashed run sent it) is claimed but not handed out again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import args_row
from psycopg.types.json import set_json_loads

from messagecenter.core.types import Channel
from messagecenter.db.queries import query
from messagecenter.execution.shards import Shard


class Unloadable:
    """A value of one event that could not be loaded (e.g. a ctx too deep or with a number Python
    cannot hold): it fails that event alone, with ``reason`` in its delivery log."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unloadable({self.reason!r})"


@dataclass(slots=True)
class ClaimedEvent:
    """One event claimed by a delivery chunk: a row of ``claim_for_delivery``, column for column
    (built positionally: the statement's columns are these fields, in this order)."""

    id: int
    event_type: str
    channel: int
    email: str | None
    mobile_phone: str | None
    push_token: str | None
    external_id: str | None
    language: str | None
    country: str | None
    origin: str | None
    ctx: Any  # the JSON object as loaded, or Unloadable (see load_problem)
    created: datetime
    scheduled: datetime | None
    scheduled_out_of_range: bool
    template_id: int
    template_version: int
    errors: int
    next_try: datetime

    def load_problem(self) -> str | None:
        """Why this event's data cannot be delivered as stored, or ``None``."""
        if isinstance(self.ctx, Unloadable):
            return f"cannot load ctx: {self.ctx.reason}"
        if self.ctx is not None and not isinstance(self.ctx, dict):
            return f"ctx is a JSON {type(self.ctx).__name__}, not an object"
        if self.scheduled_out_of_range:
            return "scheduled is out of the supported range (years 1 to 9999)"
        return None

    @property
    def address(self) -> str | None:
        """Where to send, normalised: a lower-cased e-mail address, a phone number or a push token."""
        if self.channel == Channel.EMAIL:
            value = (self.email or "").strip()
            return value.lower() if "@" in value else None
        raw = self.mobile_phone if self.channel == Channel.SMS else self.push_token
        return (raw or "").strip() or None

    def template_fields(self) -> dict[str, Any]:
        """``event`` as a template sees it: the pushed fields, ``type`` for the event type."""
        return {
            "id": self.id,
            "type": self.event_type,
            "channel": self.channel,
            "email": self.email,
            "mobile_phone": self.mobile_phone,
            "push_token": self.push_token,
            "external_id": self.external_id,
            "language": self.language,
            "country": self.country,
            "origin": self.origin,
            "created": self.created,
            "scheduled": self.scheduled,
        }


def load_ctx(data: bytes | str) -> Any:
    """ctx with msgspec (several times faster than json.loads); what cannot be loaded (too deep, a
    number Python cannot hold) becomes :class:`Unloadable`, which fails that event alone."""
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        return Unloadable(f"{type(exc).__name__}: {exc}")


class ShardClaim:
    """The claims of one shard's delivery, chunk after chunk, each in its caller's transaction.

    :param chunk: most events per chunk.
    :param lease_seconds: the lease: how long the server lets a chunk's session sit silent in its
        transaction before ending it (and freeing the events).
    """

    def __init__(self, shard: Shard, *, chunk: int, lease_seconds: int) -> None:
        self._queue = shard.queue
        # Keyset: the first chunk starts before every due time; then after the last event claimed.
        self._params = {**asdict(shard), "limit": chunk, "after_next_try": "-infinity", "after_id": 0}
        self._timeout = f"{lease_seconds}s"

    def next_chunk(self, conn: psycopg.Connection[Any]) -> list[ClaimedEvent] | None:
        """Lock the next chunk in ``conn``'s transaction: its events that have no final delivery
        log yet (possibly none), or ``None`` when the shard has no due event left."""
        conn.execute(query("set_lease_timeout"), {"timeout": self._timeout})
        # Positional: the statement's columns are ClaimedEvent's fields, in order.
        with conn.cursor(row_factory=args_row(ClaimedEvent)) as cur:
            set_json_loads(load_ctx, cur)
            events = cur.execute(query("claim_for_delivery", self._queue), self._params).fetchall()
        if not events:
            return None
        self._params["after_next_try"], self._params["after_id"] = events[-1].next_try, events[-1].id
        done = {r[0] for r in conn.execute(query("delivered_already"), {"ids": [e.id for e in events]})}
        if done:
            events = [e for e in events if e.id not in done]
        return events
