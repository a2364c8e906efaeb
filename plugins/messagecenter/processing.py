"""The execution workflows' logic: split a queue, link templates, deliver, copy statuses back.

Plain functions on psycopg connections, so they are unit-tested without a scheduler; the Airflow
operators (``operators.py``) and the real-time drain call them. Every step is set-based SQL
(``include/sql/queries/processing.sql``); Python touches individual events only to render and send
them, and writes their results back per chunk.

Crash safety: the split leases the events it claims (``claimed_until``), so events of a split
whose link never ran come back when it expires. A delivery chunk holds its events' row locks
while it sends; the server ends a session silent for ``lease_seconds`` in its transaction: a
killed or hung worker's events become claimable again, and the unique delivery log per event makes a
redelivery write no second final log.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from messagecenter.config import QUEUES, ProcessingSettings, Queue
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, Transport
from messagecenter.exceptions import RenderError
from messagecenter.models import EXPIRED, FAILED, IGNORED, SENT
from messagecenter.queries import query
from messagecenter.templates import PublishedTemplate, Renderer

log = logging.getLogger(__name__)

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
TransportFactory = Callable[[int], Transport]
_MAX_BACKOFF_SECONDS = 3600.0
_WATERMARK = "delivery_log"
_ADDRESS_FIELD = {0: "email", 1: "mobile_phone", 41: "push_token", 42: "push_token"}
_ADDRESS_NAME = {0: "e-mail address", 1: "mobile phone number", 41: "push token", 42: "push token"}


@dataclass(frozen=True)
class Shard:
    """A slice of one queue's work, small enough for XCom: never the events themselves.

    ``batch_id`` is the split run that claimed the events (None for a retry shard, which delivers
    whatever is due for its event type and channel); ``min_id``..``max_id`` bounds the ids.
    """

    queue: Queue
    event_type: str
    channel: int
    batch_id: int | None
    min_id: int
    max_id: int
    count: int

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, data: dict[str, Any] | Shard) -> Shard:
        return data if isinstance(data, Shard) else cls(**data)


@dataclass
class Counts:
    """What a step did, for the task log and the benchmarks."""

    claimed: int = 0
    linked: int = 0
    not_taken: int = 0
    sent: int = 0
    ignored: int = 0
    failed: int = 0
    retried: int = 0
    copied: int = 0
    expired: int = 0
    started: float = field(default_factory=time.monotonic, repr=False)

    def add(self, other: Counts) -> None:
        for name in (
            "claimed",
            "linked",
            "not_taken",
            "sent",
            "ignored",
            "failed",
            "retried",
            "copied",
            "expired",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "started"}

    def log(self, what: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        handled = (
            self.claimed + self.sent + self.ignored + self.failed + self.retried + self.copied + self.expired
        )
        log.info(
            "%s: claimed %s, linked %s, not taken into account %s, sent %s, ignored %s, failed %s, "
            "retried %s, status copied %s, expired %s in %.2f s (%.0f events/s)",
            what,
            self.claimed,
            self.linked,
            self.not_taken,
            self.sent,
            self.ignored,
            self.failed,
            self.retried,
            self.copied,
            self.expired,
            elapsed,
            handled / elapsed,
        )


# --- split -------------------------------------------------------------------------------------


def _ranges(min_id: int, max_id: int, parts: int) -> Iterator[tuple[int, int]]:
    """Split ``min_id..max_id`` into ``parts`` contiguous ranges of about equal width."""
    width = (max_id - min_id + 1) / parts
    bounds = [min_id + round(width * i) for i in range(parts)] + [max_id + 1]
    for low, high in itertools.pairwise(bounds):
        if high > low:
            yield low, high - 1


def split_queue(conn: psycopg.Connection[Any], queue: Queue, settings: ProcessingSettings) -> list[Shard]:
    """Claim due pending events of ``queue`` in bounded chunks and describe them as shards.

    Returns shards for the claimed events (grouped by event type and channel, each group cut into
    at most ``settings.parallelism`` id ranges) plus one retry shard per (event type, channel)
    with linked events due again. The number of shards does not grow with the volume.
    """
    batch_id = conn.execute("SELECT nextval('mc.batch_seq')").fetchone()[0]  # type: ignore[index]
    groups: dict[tuple[str, int], list[int]] = {}  # (type, channel) -> [count, min, max]
    claimed = 0
    while claimed < settings.max_events_per_run:
        limit = min(settings.claim_chunk, settings.max_events_per_run - claimed)
        with conn.transaction():
            rows = conn.execute(
                query("processing", "claim_pending", queue),
                {"limit": limit, "batch_id": batch_id, "lease": settings.lease_seconds},
            ).fetchall()
        chunk = sum(r[2] for r in rows)
        claimed += chunk
        for event_type, channel, n, low, high in rows:
            g = groups.setdefault((event_type, channel), [0, low, high])
            g[0], g[1], g[2] = g[0] + n, min(g[1], low), max(g[2], high)
        if chunk < limit:
            break
    shards = []
    for (event_type, channel), (n, low, high) in sorted(groups.items()):
        parts = max(1, min(settings.parallelism, n // max(settings.min_shard_size, 1)))
        for lo, hi in _ranges(low, high, parts):
            shards.append(Shard(queue, event_type, channel, batch_id, lo, hi, n // parts))
    claimed_groups = set(groups)
    for event_type, channel, n in conn.execute(query("processing", "due_retries", queue)).fetchall():
        if (event_type, channel) not in claimed_groups:
            shards.append(Shard(queue, event_type, channel, None, -(2**63), 2**63 - 1, n))
    conn.commit()
    log.info("Split %s: claimed %s events into %s shards (batch %s)", queue, claimed, len(shards), batch_id)
    return shards


# --- link --------------------------------------------------------------------------------------


def link_templates(conn: psycopg.Connection[Any], shard: Shard) -> Counts:
    """Link the shard's claimed events to the latest published template with one statement:
    Pending delivery (1) when one exists, else Event not taken into account (5)."""
    counts = Counts()
    if shard.batch_id is None:  # a retry shard: its events are linked already
        return counts
    params = asdict(shard)
    with conn.transaction():
        template = conn.execute(query("processing", "latest_template"), params).fetchone()
        if template is None:
            counts.not_taken = conn.execute(
                query("processing", "mark_not_taken", shard.queue), params
            ).rowcount
        else:
            params.update(template_id=template[0], version=template[1])
            counts.linked = conn.execute(query("processing", "link_template", shard.queue), params).rowcount
    if counts.not_taken:
        log.info(
            "No published template for %s on channel %s: %s events not taken into account",
            shard.event_type,
            shard.channel,
            counts.not_taken,
        )
    return counts


# --- deliver -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    event: dict[str, Any]
    status: int | None  # SENT / IGNORED / FAILED, or None for a transient error
    address: str | None = None
    send: SendResult | None = None
    error: str | None = None


def backoff(errors: int, base_seconds: float) -> float:
    """Seconds before try ``errors + 1``: base, 2x base, 4x base..., capped at one hour."""
    return min(base_seconds * 2 ** max(errors - 1, 0), _MAX_BACKOFF_SECONDS)


def _templates(
    conn: psycopg.Connection[Any], events: list[dict[str, Any]]
) -> dict[tuple[int, int], PublishedTemplate]:
    keys = {(e["template_id"], e["template_version"]) for e in events}
    rows = conn.execute(
        query("processing", "published_templates"),
        {"template_id": [k[0] for k in keys], "version": [k[1] for k in keys]},
    ).fetchall()
    return {(r[1], r[2]): PublishedTemplate(*r) for r in rows}


def _address(event: dict[str, Any]) -> str | None:
    value = event.get(_ADDRESS_FIELD[event["channel"]])
    value = value.strip() if value else None
    if value and event["channel"] == 0:
        value = value.lower() if "@" in value else None
    return value or None


_NOT_EVENT_FIELDS = frozenset({"ctx", "template_id", "template_version", "errors", "next_try"})


def _event_fields(event: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in event.items() if k not in _NOT_EVENT_FIELDS}
    fields["type"] = fields.pop("event_type")
    return fields


def _deliver_chunk(
    conn: psycopg.Connection[Any],
    events: list[dict[str, Any]],
    transport: Transport,
    renderer: Renderer,
    heartbeat_seconds: float,
) -> list[_Result]:
    """Render and send a claimed chunk; every ``heartbeat_seconds`` of sending, a trivial statement
    tells the server this worker is alive, so only a hung one loses its chunk to the idle timeout."""
    templates = _templates(conn, events)
    channel = events[0]["channel"]
    addresses = {e["id"]: _address(e) for e in events}
    blocked = {
        r[0]
        for r in conn.execute(
            query("processing", "quarantined"),
            {"channel": channel, "addresses": [a for a in addresses.values() if a]},
        )
    }
    results: list[_Result] = []
    next_beat = time.monotonic() + heartbeat_seconds
    with transport:
        for event in events:
            address = addresses[event["id"]]
            if address is None:
                results.append(_Result(event, IGNORED, error=f"no {_ADDRESS_NAME[channel]}"))
                continue
            if address in blocked:
                results.append(_Result(event, IGNORED, address, error="address in quarantine"))
                continue
            template = templates.get((event["template_id"], event["template_version"]))
            if template is None:
                results.append(_Result(event, FAILED, address, error="template version no longer published"))
                continue
            try:
                rendered = renderer.render(template, event=_event_fields(event), ctx=event["ctx"] or {})
            except RenderError as exc:
                results.append(_Result(event, FAILED, address, error=f"render error: {exc}"))
                continue
            if rendered.is_empty(channel):
                results.append(_Result(event, IGNORED, address, error="empty message"))
                continue
            message = OutgoingMessage(
                event_id=event["id"],
                channel=channel,
                address=address,
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
                data=rendered.data,
            )
            sent = transport.send(message)
            if time.monotonic() >= next_beat:
                conn.execute("SELECT 1")  # restarts the server's idle-in-transaction clock
                next_beat = time.monotonic() + heartbeat_seconds
            status = {Outcome.SENT: SENT, Outcome.PERMANENT: FAILED, Outcome.TRANSIENT: None}[sent.outcome]
            results.append(_Result(event, status, address, sent, sent.error))
    return results


def _write_results(
    conn: psycopg.Connection[Any], queue: Queue, results: list[_Result], settings: ProcessingSettings
) -> Counts:
    """Write a chunk's outcome, in its transaction: final delivery logs, then retries with backoff.

    A final log is all a delivered event needs: the claim skips events that have one, and the
    status copy sets the status and the error count (from ``tries``) on the event.
    """
    counts = Counts()
    final: list[tuple[_Result, int]] = []  # result, final status
    retry_ids, retry_errors, retry_at = [], [], []
    now = datetime.now(UTC)
    for r in results:
        errors = r.event["errors"] + (r.send is not None and r.send.outcome is not Outcome.SENT)
        if r.status is not None:
            final.append((r, r.status))
        elif errors >= settings.max_tries:
            final.append((replace(r, error=f"max tries ({errors}) reached: {r.error}"), FAILED))
        else:
            retry_ids.append(r.event["id"])
            retry_errors.append(errors)
            retry_at.append(now + timedelta(seconds=backoff(errors, settings.retry_backoff_seconds)))
    if final:
        _insert_logs(
            conn,
            [
                (
                    r.event["id"],
                    queue,
                    status,
                    r.event["channel"],
                    r.address,
                    r.event["template_id"],
                    r.event["template_version"],
                    r.send.message_id if r.send else None,
                    r.send.provider_answer if r.send else None,
                    r.error,
                    # send attempts: the earlier failed ones, plus this one when a message went out
                    r.event["errors"] + (r.send is not None),
                )
                for r, status in final
            ],
        )
    if retry_ids:
        conn.execute(
            query("processing", "schedule_retries", queue),
            {"id": retry_ids, "errors": retry_errors, "next_try": retry_at},
        )
    for _, status in final:
        counts.sent += status == SENT
        counts.ignored += status == IGNORED
        counts.failed += status == FAILED
    counts.retried = len(retry_ids)
    return counts


_LOG_COLUMNS = (
    "event_id",
    "queue",
    "status",
    "channel",
    "address",
    "template_id",
    "template_version",
    "message_id",
    "provider_answer",
    "error",
    "tries",
)
_COPY_LOGS = sql.SQL("COPY mc.delivery_log ({}) FROM STDIN").format(
    sql.SQL(", ").join(map(sql.Identifier, _LOG_COLUMNS))
)


def _insert_logs(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Write final delivery logs with COPY; if an event already has one (redelivered after a
    crash), fall back to an insert that keeps the first log of each event."""
    try:
        with conn.transaction(), conn.cursor().copy(_COPY_LOGS) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        log.info(
            "Some of %s events were delivered before (a crashed run): keeping their first log", len(rows)
        )
        conn.execute(
            query("processing", "insert_delivery_logs"),
            dict(zip(_LOG_COLUMNS, map(list, zip(*rows, strict=True)), strict=True)),
        )


# The session setting that ends a delivery chunk's transaction when it hangs (for this transaction only).
_SET_LEASE = "SELECT set_config('idle_in_transaction_session_timeout', %s, true)"


def deliver_shard(
    conn: psycopg.Connection[Any],
    shard: Shard,
    settings: ProcessingSettings,
    *,
    transport_for: TransportFactory,
    renderer: Renderer | None = None,
    time_budget: float | None = None,
) -> Counts:
    """Deliver the shard's due events chunk by chunk until none is left or the time budget is spent.

    Each chunk is one transaction: claim (row locks), render and send over one transport
    connection, write the final delivery logs and schedule the retries, commit. The locks are the
    lease, so nothing is written per event to claim it; ``idle_in_transaction_session_timeout``
    set to ``lease_seconds`` has the server end a session that hangs while holding them (a worker
    that is only slow says it is alive between its messages).
    """
    renderer = renderer or Renderer()
    counts = Counts()
    deadline = time.monotonic() + (time_budget or settings.deliver_time_budget_seconds)
    # Keyset: the first chunk starts before every due time; then after the last event claimed.
    params = {**asdict(shard), "limit": settings.deliver_chunk, "after_next_try": "-infinity", "after_id": 0}
    timeout = f"{settings.lease_seconds}s"
    while time.monotonic() < deadline:
        with conn.transaction():
            conn.execute(_SET_LEASE, (timeout,))
            with conn.cursor(row_factory=dict_row) as cur:
                set_json_loads(msgspec.json.decode, cur)  # ctx: several times faster than json.loads
                events = cur.execute(
                    query("processing", "claim_for_delivery", shard.queue), params
                ).fetchall()
            if not events:
                break
            params["after_next_try"], params["after_id"] = events[-1]["next_try"], events[-1]["id"]
            done = {
                r[0]
                for r in conn.execute(
                    query("processing", "delivered_already"), {"ids": [e["id"] for e in events]}
                )
            }
            if done:
                events = [e for e in events if e["id"] not in done]
            if events:
                results = _deliver_chunk(
                    conn, events, transport_for(shard.channel), renderer, settings.lease_seconds / 3
                )
                counts.add(_write_results(conn, shard.queue, results, settings))
    return counts


# --- status ------------------------------------------------------------------------------------


def update_events_status(conn: psycopg.Connection[Any]) -> Counts:
    """Copy Sent / Ignored / Failed from the delivery logs onto the events, past a watermark.

    The watermark is a transaction id. Each run copies every visible log written at or past it,
    then moves it to the oldest transaction that was still running when the run started
    (``pg_snapshot_xmin``): a log committed late has an id at or past that, so a later run copies
    it; it is never skipped, and a busy cluster never delays the logs already committed.
    """
    counts = Counts()
    with conn.transaction():
        completed = conn.execute(query("processing", "completed_txid")).fetchone()[0]  # type: ignore[index]
        row = conn.execute(query("processing", "get_watermark"), {"name": _WATERMARK}).fetchone()
        low = row[0] if row else "0"
        for queue in QUEUES:
            counts.copied += conn.execute(
                query("processing", "copy_delivery_status", queue), {"low": low, "queue": queue}
            ).rowcount
        conn.execute(query("processing", "set_watermark"), {"name": _WATERMARK, "txid": completed})
    return counts


def expire_events(conn: psycopg.Connection[Any], settings: ProcessingSettings) -> Counts:
    """Mark Event expired (6) what was not delivered within its queue's validity."""
    counts = Counts()
    validity = {"rt": settings.rt_validity_seconds, "batch": settings.batch_validity_seconds}
    with conn.transaction():
        for queue in QUEUES:
            counts.expired += conn.execute(
                query("processing", "expire_events", queue), {"validity": validity[queue]}
            ).rowcount
    return counts


# --- real time ---------------------------------------------------------------------------------


def process_once(
    conn: psycopg.Connection[Any],
    queue: Queue,
    settings: ProcessingSettings,
    *,
    transport_for: TransportFactory,
    renderer: Renderer,
) -> Counts:
    """One pass of split, link and deliver over ``queue`` in this process (the real-time path)."""
    counts = Counts()
    shards = split_queue(conn, queue, settings)
    for shard in shards:
        counts.claimed += shard.count if shard.batch_id is not None else 0
        counts.add(link_templates(conn, shard))
    for shard in shards:
        counts.add(deliver_shard(conn, shard, settings, transport_for=transport_for, renderer=renderer))
    return counts


def drain_realtime(
    connect: Connect,
    settings: ProcessingSettings,
    *,
    transport_for: TransportFactory,
    lifetime_seconds: float | None = None,
    idle_wait_seconds: float = 1.0,
) -> Counts:
    """Drain the rt queue as events arrive until the lifetime is spent.

    A ``LISTEN mc_rt_event`` connection wakes the loop as soon as an insert commits (the queue's
    statement trigger notifies); with nothing to do it also wakes every ``idle_wait_seconds`` for
    retries and scheduled events. A bounded lifetime lets the next DAG run take over cleanly.
    """
    renderer = Renderer()
    total = Counts()
    deadline = time.monotonic() + (lifetime_seconds or settings.rt_drain_seconds)
    with connect() as listener, connect() as conn:
        listener.autocommit = True
        listener.execute("LISTEN mc_rt_event")
        while time.monotonic() < deadline:
            counts = process_once(conn, "rt", settings, transport_for=transport_for, renderer=renderer)
            if counts.claimed or counts.sent or counts.ignored or counts.failed or counts.retried:
                counts.log("rt drain pass")
                total.add(counts)
                continue  # more may be waiting: look again before sleeping
            timeout = min(idle_wait_seconds, max(deadline - time.monotonic(), 0.0))
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                pass
    total.log("rt drain")
    return total


__all__ = [
    "EXPIRED",
    "Counts",
    "Shard",
    "backoff",
    "deliver_shard",
    "drain_realtime",
    "expire_events",
    "link_templates",
    "process_once",
    "split_queue",
    "update_events_status",
]
