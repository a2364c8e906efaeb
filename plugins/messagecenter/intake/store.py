"""The execution event store: the ``rt`` and ``batch`` queues.

Writes are set-based: a batch is stored with one ``COPY`` after one id allocation query, whatever its
size. Every function takes an open psycopg 3 connection and leaves transaction boundaries to itself
(a push is atomic: all events of a request or none).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from messagecenter.core.ids import make_event_id
from messagecenter.core.types import QUEUES, Channel, Queue, Status
from messagecenter.db.queries import query
from messagecenter.intake.decode import EventIn

log = logging.getLogger(__name__)

# Columns written at intake, in the order of the statement copy_events.
INTAKE_COLUMNS = (
    "id",
    "event_type",
    "channel",
    "email",
    "mobile_phone",
    "push_token",
    "external_id",
    "language",
    "country",
    "origin",
    "ctx",
    "idempotency_key",
    "scheduled",
)
_MAX_ATTEMPTS = 3  # a concurrent push of the same idempotency key makes us retry the transaction


@dataclass(frozen=True)
class InsertResult:
    """Ids in request order, and how many were already stored under the same idempotency key."""

    ids: list[int]
    replayed: int = 0


def intake_row(event_id: int, event: EventIn, key: str | None) -> tuple[Any, ...]:
    """One row in :data:`INTAKE_COLUMNS` order."""
    return (
        event_id,
        event.type,
        event.channel_code,
        event.email,
        event.mobile_phone,
        event.push_token,
        event.external_id,
        event.language,
        event.country,
        event.origin,
        event.ctx_json,
        key,
        event.scheduled,
    )


def dedup_keys(events: Sequence[EventIn], idempotency_key: str | None) -> list[str | None]:
    """The de-duplication key of each event: the request's key (suffixed by position in a batch),
    else the event's ``external_id``, else none."""
    if idempotency_key:
        if len(events) == 1:
            return [idempotency_key]
        return [f"{idempotency_key}#{i}" for i in range(len(events))]
    return [e.external_id for e in events]


def insert_events(
    conn: psycopg.Connection[Any],
    queue: Queue,
    events: Sequence[EventIn],
    *,
    instance_id: int,
    idempotency_key: str | None = None,
) -> InsertResult:
    """Store ``events`` in ``queue`` atomically and return their ids in order.

    An event whose key is already stored is not stored again: its existing id is returned.
    """
    keys = dedup_keys(events, idempotency_key)
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            with conn.transaction():
                return _insert(conn, queue, events, keys, instance_id)
        except psycopg.errors.UniqueViolation:
            # Another request stored one of our keys between our lookup and our write: look again.
            if attempt == _MAX_ATTEMPTS:
                raise
            log.info("Idempotency key race on %s, retrying (attempt %s)", queue, attempt)
    raise AssertionError("unreachable")


def _insert(
    conn: psycopg.Connection[Any],
    queue: Queue,
    events: Sequence[EventIn],
    keys: list[str | None],
    instance_id: int,
) -> InsertResult:
    known: dict[str, int] = {}
    wanted = sorted({k for k in keys if k})
    if wanted:
        known = dict(conn.execute(query("find_idempotency_keys", queue), {"keys": wanted}).fetchall())

    # Which positions need a new row: no key, or a key neither stored nor seen earlier in this request.
    new_positions: list[int] = []
    first_position: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            new_positions.append(i)
        elif key not in known and key not in first_position:
            first_position[key] = i
            new_positions.append(i)

    ids: list[int | None] = [known.get(k) if k else None for k in keys]
    if new_positions:
        # One round trip for all sequence values (binary int8[]: the cheapest form to ship back).
        allocated = (
            conn.cursor(binary=True)
            .execute(query("allocate_sequences"), {"n": len(new_positions)})
            .fetchone()
        )
        seqs: list[int] = allocated[0] if allocated else []
        new_ids = [make_event_id(instance_id, s) for s in sorted(seqs)]
        for position, event_id in zip(new_positions, new_ids, strict=True):
            ids[position] = event_id
        with conn.cursor().copy(query("copy_events", queue)) as copy:
            for position, event_id in zip(new_positions, new_ids, strict=True):
                copy.write_row(intake_row(event_id, events[position], keys[position]))
    for i, key in enumerate(keys):  # later duplicates inside the request share the first one's id
        if ids[i] is None and key is not None:
            ids[i] = ids[first_position[key]]
    return InsertResult(ids=[i for i in ids if i is not None], replayed=len(keys) - len(new_positions))


def get_event(conn: psycopg.Connection[Any], queue: Queue, event_id: int) -> dict[str, Any] | None:
    """The event as a dict with its queue, channel name and status name, or ``None``."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("get_event", queue), {"id": event_id}).fetchone()
    if row is None:
        return None
    row["queue"] = queue
    row["channel"] = Channel(row["channel"]).label
    row["status_name"] = Status(row["status"]).label
    return row


def pending_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Events not yet in a final status (pending or pending delivery), per queue."""
    counts: dict[str, int] = {}
    for queue in QUEUES:
        row = conn.execute(query("count_pending", queue)).fetchone()
        counts[queue] = row[0] if row else 0
    return counts


def status_counts(conn: psycopg.Connection[Any], queue: Queue) -> dict[int, int]:
    """Number of events per status code in ``queue`` (codes with no event are left out)."""
    return dict(conn.execute(query("count_by_status", queue)).fetchall())
