"""The execution event store: the ``rt`` and ``batch`` queues.

Writes are set-based: a batch is stored with one ``COPY`` after one id allocation query, whatever its
size. Every function takes an open psycopg 3 connection and leaves transaction boundaries to itself
(a push is atomic: all events of a request or none).

Idempotency: an event pushed with a de-duplication key is stored once; a push of the same key with
the same content answers the stored event's id (a replay), with different content it is refused
(:class:`IdempotencyConflict`, the API's 409). Keys live in one column, ``idempotency_key``, unique
per queue, in three namespaces that cannot collide:

* ``h:<K>``: the event of a single push with header ``Idempotency-Key: K``;
* ``b:<K>#<i>``: item ``i`` of a batch pushed with header ``Idempotency-Key: K``;
* ``x:<E>``: an event whose ``external_id`` is ``E``, pushed without an ``Idempotency-Key``.

So a batch keyed ``K`` and a single push keyed ``K#0`` are different keys, and so are one client's
``external_id`` and another's header key. A key also answers for the whole request it came with: a
single push keyed ``K`` after a batch keyed ``K`` (or the reverse), or a replay of a batch keyed ``K``
with more or fewer events than the first, is a conflict too.

Content is compared through ``request_hash``, a 16-byte BLAKE2b of the event as decoded (every field,
defaults filled in, ``scheduled`` in UTC, ``ctx`` byte for byte as sent), stored with keyed events
only. Events stored before it existed (``NULL``) are taken as matching.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import psycopg
from psycopg.rows import dict_row

from messagecenter.core.ids import make_event_id
from messagecenter.core.types import QUEUES, Channel, Queue, Status
from messagecenter.db.queries import query
from messagecenter.feedback.types import FailureReason, FailureType
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
    "request_hash",
)
_MAX_ATTEMPTS = 3  # a concurrent push of the same idempotency key makes us retry the transaction
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class InsertResult:
    """Ids in request order, and how many were already stored under the same idempotency key."""

    ids: list[int]
    replayed: int = 0


class IdempotencyConflict(ValueError):
    """A key already stands for other content (or another request): nothing was stored.

    :param key: the key as the client sent it (header value or ``external_id``).
    :param source: ``"Idempotency-Key"`` (the header) or ``"external_id"``.
    :param index: the position in the request of the event at fault, when one is.
    """

    def __init__(
        self, key: str, source: Literal["Idempotency-Key", "external_id"], index: int | None
    ) -> None:
        if source == "external_id":
            where = "" if index is None else f" (event {index})"
            message = f"external_id {key!r}{where} is already stored with different content"
        else:
            message = f"Idempotency-Key {key!r} was already used for a different request"
        super().__init__(message)
        self.key, self.source, self.index = key, source, index


def intake_row(
    event_id: int, event: EventIn, key: str | None, request_hash: bytes | None = None
) -> tuple[Any, ...]:
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
        request_hash,
    )


def content_hash(event: EventIn) -> bytes:
    """The ``request_hash`` of an event: what a replay of its key must match."""
    return hashlib.blake2b(_ENCODER.encode(event), digest_size=16).digest()


def dedup_keys(
    events: Sequence[EventIn], idempotency_key: str | None, *, batch: bool | None = None
) -> list[str | None]:
    """The de-duplication key of each event (see the module doc): from the request's key, else from
    the event's ``external_id``, else none. ``batch`` says whether the request was a batch (default:
    whether it holds several events)."""
    if batch is None:
        batch = len(events) != 1
    if idempotency_key:
        if batch:
            return [f"b:{idempotency_key}#{i}" for i in range(len(events))]
        if len(events) != 1:
            raise ValueError(f"a single push holds one event, got {len(events)}")
        return [f"h:{idempotency_key}"]
    return [None if e.external_id is None else f"x:{e.external_id}" for e in events]


def insert_events(
    conn: psycopg.Connection[Any],
    queue: Queue,
    events: Sequence[EventIn],
    *,
    instance_id: int,
    idempotency_key: str | None = None,
    batch: bool | None = None,
) -> InsertResult:
    """Store ``events`` in ``queue`` atomically and return their ids in order.

    An event whose key is already stored with the same content is not stored again: its existing id
    is returned. A key stored with other content raises :class:`IdempotencyConflict`, storing nothing.
    ``batch``: whether the request was a batch (default: whether it holds several events).
    """
    if batch is None:
        batch = len(events) != 1
    keys = dedup_keys(events, idempotency_key, batch=batch)
    hashes = [None if key is None else content_hash(event) for event, key in zip(events, keys, strict=True)]
    # The request's key must not stand for a request of another shape or size (see the module doc).
    foreign: list[str] = []
    if idempotency_key and batch:
        foreign = [f"h:{idempotency_key}", f"b:{idempotency_key}#{len(events)}"]
    elif idempotency_key:
        foreign = [f"b:{idempotency_key}#0"]
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            with conn.transaction():
                return _insert(
                    conn, queue, events, keys, hashes, foreign, instance_id, idempotency_key, batch
                )
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
    hashes: list[bytes | None],
    foreign: list[str],
    instance_id: int,
    idempotency_key: str | None,
    batch: bool,
) -> InsertResult:
    def conflict(position: int | None) -> IdempotencyConflict:
        if idempotency_key:
            return IdempotencyConflict(idempotency_key, "Idempotency-Key", position if batch else None)
        assert position is not None
        external_id = events[position].external_id or ""
        return IdempotencyConflict(external_id, "external_id", position if batch else None)

    known: dict[str, tuple[int, bytes | None]] = {}
    wanted = sorted({k for k in keys if k} | set(foreign))
    if wanted:
        rows = conn.execute(query("find_idempotency_keys", queue), {"keys": wanted}).fetchall()
        known = {key: (event_id, digest) for key, event_id, digest in rows}
    if idempotency_key:
        # A request is stored whole: either all its keys are there (a replay) or none.
        found = sum(key in known for key in keys)
        if any(key in known for key in foreign) or 0 < found < len(keys):
            raise conflict(None)

    # Which positions need a new row: no key, or a key neither stored nor seen earlier in this request.
    new_positions: list[int] = []
    first_position: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            new_positions.append(i)
        elif key in known:
            stored_hash = known[key][1]
            if stored_hash is not None and stored_hash != hashes[i]:  # NULL: stored before hashes existed
                raise conflict(i)
        elif key in first_position:
            if hashes[first_position[key]] != hashes[i]:
                raise conflict(i)
        else:
            first_position[key] = i
            new_positions.append(i)

    ids: list[int | None] = [known[k][0] if k is not None and k in known else None for k in keys]
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
                copy.write_row(intake_row(event_id, events[position], keys[position], hashes[position]))
    for i, key in enumerate(keys):  # later duplicates inside the request share the first one's id
        if ids[i] is None and key is not None:
            ids[i] = ids[first_position[key]]
    return InsertResult(ids=[i for i in ids if i is not None], replayed=len(keys) - len(new_positions))


_DELIVERY = {1: "delivered", 2: "failed"}  # mc.delivery_log.delivery: what came after the send


def _label(enum_type: type[FailureType] | type[FailureReason], code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return enum_type(code).label
    except ValueError:  # a code this version does not know: shown as it is
        return str(code)


def get_event(conn: psycopg.Connection[Any], queue: Queue, event_id: int) -> dict[str, Any] | None:
    """The event as a dict with its queue, channel name and status name, or ``None``; with its
    delivery's outcome after the send (``delivery``, ``failure_type``, ``failure_reason`` as
    Campaign's labels, ``feedback_at``), all ``None`` until its delivery log says something."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("get_event", queue), {"id": event_id}).fetchone()
    if row is None:
        return None
    row["queue"] = queue
    row["channel"] = Channel(row["channel"]).label
    row["status_name"] = Status(row["status"]).label
    row["delivery"] = _DELIVERY.get(row["delivery"])
    row["failure_type"] = _label(FailureType, row["failure_type"])
    row["failure_reason"] = _label(FailureReason, row["failure_reason"])
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
