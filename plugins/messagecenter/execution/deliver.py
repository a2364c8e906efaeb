"""Deliver: render and send a shard's linked events, chunk by chunk, and log each final result.

Each chunk is one transaction that holds its events' row locks while it sends: the locks are the
lease. A killed worker's session ends and frees them at once; the server ends a session silent
for ``lease_seconds`` in its transaction (a hung worker), while a live worker says it is alive
between messages. The unique delivery log per event makes a redelivery write no second final log.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.rows import args_row
from psycopg.types.json import set_json_loads

from messagecenter.core.errors import RenderError, TransientError
from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import ADDRESS_NAMES, ClaimedEvent, Queue, Status, Unloadable
from messagecenter.db.queries import query
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, Transport
from messagecenter.delivery.guards import CircuitBreaker, breaker_for
from messagecenter.delivery.pool import TransportPool
from messagecenter.delivery.rate import RateLimiter
from messagecenter.execution.shards import Counts, Shard
from messagecenter.templates.rendering import Renderer
from messagecenter.templates.spec import PublishedTemplate

log = logging.getLogger(__name__)

TransportFactory = Callable[[int], Transport]  # channel code -> a transport, not yet opened
_MAX_BACKOFF_SECONDS = 3600.0
_STATUS_OF = {Outcome.SENT: Status.SENT, Outcome.PERMANENT: Status.FAILED, Outcome.TRANSIENT: None}


@dataclass(frozen=True)
class _Result:
    event: ClaimedEvent
    status: Status | None  # SENT / IGNORED / FAILED, or None for a transient error
    address: str | None = None
    send: SendResult | None = None
    error: str | None = None
    retry_after: float = 0.0  # seconds: no retry before, whatever the backoff says


def _load_ctx(data: bytes | str) -> Any:
    """ctx with msgspec (several times faster than json.loads); what cannot be loaded (too deep, a
    number Python cannot hold) becomes :class:`Unloadable`, which fails that event alone."""
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        return Unloadable(f"{type(exc).__name__}: {exc}")


def renderer_for(settings: ProcessingSettings) -> Renderer:
    """A renderer with the settings' bounds on render time and output size."""
    return Renderer(time_limit=settings.render_timeout_seconds, max_output_chars=settings.render_max_chars)


def backoff(errors: int, base_seconds: float) -> float:
    """Seconds before try ``errors + 1``: base, 2x base, 4x base..., capped at one hour."""
    return min(base_seconds * 2 ** max(errors - 1, 0), _MAX_BACKOFF_SECONDS)


def _templates(
    conn: psycopg.Connection[Any], events: list[ClaimedEvent]
) -> dict[tuple[int, int], PublishedTemplate]:
    keys = {(e.template_id, e.template_version) for e in events}
    rows = conn.execute(
        query("published_templates"),
        {"template_id": [k[0] for k in keys], "version": [k[1] for k in keys]},
    ).fetchall()
    return {(r[1], r[2]): PublishedTemplate(*r) for r in rows}


class DatabaseLost(TransientError):
    """The chunk's database connection went away mid-chunk: stop sending, nothing could be logged."""


def _database_lost(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server has ended this session (restart, failover, terminated backend).

    A session idle in its transaction receives nothing unless the server ends it, so a readable
    socket is the sign: one cheap ``select``, a round trip only when the socket is readable.
    """
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            conn.execute(query("keep_alive"))
    except (psycopg.Error, OSError, ValueError):
        return True
    return False


def _deliver_chunk(
    conn: psycopg.Connection[Any],
    events: list[ClaimedEvent],
    make_transport: Callable[[], Transport],
    renderer: Renderer,
    heartbeat_seconds: float,
    stop: threading.Event | None,
    breaker: CircuitBreaker,
    limiter: RateLimiter | None,
) -> list[_Result]:
    """Render and send a claimed chunk, one result per event handled, in the chunk's order.

    Messages are rendered here, in order, and sent by a pool of up to ``max_connections``
    transports (the provider connection's concurrency), so that many are in flight at once; a
    provider limited to one connection is sent to inline. Anything an event's own data causes
    (loading, rendering, building or encoding the message) fails that event alone.

    Between messages: every ``heartbeat_seconds`` a trivial statement tells the server this worker
    is alive (only a hung one loses its chunk to the idle timeout); a lost database connection
    stops the sending at once (:class:`DatabaseLost`: nothing more is sent that could not be
    logged); a set ``stop`` ends the chunk early (the messages in flight finish and are logged, the
    events not handled yet come back as soon as the chunk commits); the provider's circuit breaker,
    open after consecutive transient failures, answers without calling the provider; and the rate
    limiter, when the provider has one, spaces the sends.
    """
    templates = _templates(conn, events)
    channel = events[0].channel
    addresses = {e.id: e.address for e in events}
    blocked = {
        r[0]
        for r in conn.execute(
            query("quarantined"),
            {"channel": channel, "addresses": [a for a in addresses.values() if a]},
        )
    }
    pool = TransportPool(make_transport(), make_transport)
    results: dict[int, _Result] = {}
    in_flight: dict[Future[SendResult], tuple[int, _Result]] = {}
    next_beat = time.monotonic() + heartbeat_seconds

    def keep_alive() -> None:
        nonlocal next_beat
        if time.monotonic() >= next_beat:
            conn.execute(query("keep_alive"))  # restarts the server's idle-in-transaction clock
            next_beat = time.monotonic() + heartbeat_seconds

    def settle(most_in_flight: int, *, beat: bool = True) -> None:
        """Collect finished sends until at most ``most_in_flight`` remain, staying alive meanwhile."""
        while len(in_flight) > most_in_flight:
            done, _ = wait(
                in_flight, timeout=heartbeat_seconds if beat else None, return_when=FIRST_COMPLETED
            )
            for future in done:
                position, pending = in_flight.pop(future)
                results[position] = _sent(pending, future, breaker)
            if beat:
                keep_alive()

    # One connection: sent inline, no thread to hand the message over to.
    executor = ThreadPoolExecutor(pool.size, thread_name_prefix="mc-send") if pool.size > 1 else None
    next_db_check = 0.0
    with pool, executor or contextlib.nullcontext(), renderer.time_limits():
        try:
            for position, event in enumerate(events):
                if stop is not None and stop.is_set():
                    left = len(events) - position
                    log.info("Stop requested: %s events of the chunk left for the next run", left)
                    break
                now = time.monotonic()
                if now >= next_db_check:  # every 10 ms at most: a select() per message costs
                    next_db_check = now + 0.01
                    if _database_lost(conn):
                        raise DatabaseLost(
                            f"the database connection was lost after {position} of {len(events)} "
                            "events of a chunk: sending stopped"
                        )
                try:
                    prepared = _prepare(event, addresses[event.id], blocked, templates, renderer, breaker)
                except Exception as exc:  # a bug shown by this event's data: it fails alone
                    log.exception("Event %s failed on an unexpected error", event.id)
                    error = f"internal error: {type(exc).__name__}: {exc}"
                    prepared = _Result(event, Status.FAILED, addresses[event.id], error=error)
                if isinstance(prepared, _Result):
                    results[position] = prepared
                    continue
                pending = _Result(event, None, prepared.address)
                if limiter is not None:
                    limiter.wait_turn()
                if executor is None:
                    try:
                        results[position] = _result_of(pending, pool.send(prepared), breaker)
                    except Exception as exc:
                        results[position] = _failed_in_transport(pending, exc)
                else:
                    settle(pool.size - 1)
                    in_flight[executor.submit(pool.send, prepared)] = (position, pending)
                keep_alive()
            settle(0)
        finally:
            settle(0, beat=False)  # an error ended the chunk: what is in flight still finishes
    return [results[position] for position in sorted(results)]


def provider_name(transport: Transport) -> str:
    """What a provider's breaker and rate limit are keyed by: the transport's name (connection id)."""
    return str(getattr(transport, "name", type(transport).__name__))


def _sent(pending: _Result, future: Future[SendResult], breaker: CircuitBreaker) -> _Result:
    """The result of a send handed to a thread (see :func:`_result_of`)."""
    try:
        sent = future.result()
    except Exception as exc:
        return _failed_in_transport(pending, exc)
    return _result_of(pending, sent, breaker)


def _result_of(pending: _Result, sent: SendResult, breaker: CircuitBreaker) -> _Result:
    """Sent, Failed (permanent) or a retry (transient), from the provider's answer."""
    breaker.record(sent.outcome)
    retry_after = sent.extra.get("retry_after") if sent.extra else None  # HTTP 429 / 503
    return _Result(
        pending.event, _STATUS_OF[sent.outcome], pending.address, sent, sent.error, float(retry_after or 0.0)
    )


def _failed_in_transport(pending: _Result, exc: Exception) -> _Result:
    """An unexpected exception in the transport fails the event, final: it is never resent."""
    log.error("Event %s failed on an unexpected error in the transport: %r", pending.event.id, exc)
    return replace(pending, status=Status.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")


class ProviderGuards:
    """Each provider's circuit breaker and, when its connection sets ``max_rate``, its rate limiter
    (with a connection of its own, closed at the end). One per delivery task, or per real-time
    drain: its passes then share one limiter connection and its reserved slots."""

    def __init__(self, settings: ProcessingSettings, transport_for: TransportFactory) -> None:
        self._settings = settings
        self._transport_for = transport_for
        self._guards: dict[int, tuple[CircuitBreaker, RateLimiter | None]] = {}

    def guards(
        self, conn: psycopg.Connection[Any], channel: int
    ) -> tuple[CircuitBreaker, RateLimiter | None]:
        if channel not in self._guards:
            transport = self._transport_for(channel)  # not opened: only its settings are read
            name = provider_name(transport)
            breaker = breaker_for(
                name,
                threshold=self._settings.breaker_threshold,
                cooldown=self._settings.breaker_cooldown_seconds,
            )
            rate = getattr(transport, "max_rate", None)
            limiter = None
            if rate:
                dsn, password = conn.info.dsn, conn.info.password

                def connect() -> psycopg.Connection[Any]:
                    return psycopg.connect(dsn, password=password, autocommit=True)

                limiter = RateLimiter(connect, name, float(rate))
            self._guards[channel] = (breaker, limiter)
        return self._guards[channel]

    def close(self) -> None:
        for _, limiter in self._guards.values():
            if limiter is not None:
                limiter.close()

    def __enter__(self) -> ProviderGuards:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _prepare(
    event: ClaimedEvent,
    address: str | None,
    blocked: set[str],
    templates: dict[tuple[int, int], PublishedTemplate],
    renderer: Renderer,
    breaker: CircuitBreaker,
) -> _Result | OutgoingMessage:
    """One event's checks and render: the message to send, or the result it already has."""
    channel = event.channel
    problem = event.load_problem()
    if problem is not None:
        return _Result(event, Status.FAILED, address, error=problem)
    if address is None:
        return _Result(event, Status.IGNORED, error=f"no {ADDRESS_NAMES[channel]}")
    if address in blocked:
        return _Result(event, Status.IGNORED, address, error="address in quarantine")
    template = templates.get((event.template_id, event.template_version))
    if template is None:
        return _Result(event, Status.FAILED, address, error="template version no longer published")
    try:
        rendered = renderer.render(template, event=event.template_fields(), ctx=event.ctx or {})
    except RenderError as exc:
        return _Result(event, Status.FAILED, address, error=f"render error: {exc}")
    if rendered.is_empty(channel):
        return _Result(event, Status.IGNORED, address, error="empty message")
    if not breaker.allow():
        error = f"provider failing: {breaker.threshold} transient errors in a row, not tried"
        # Not a try (the error count stays), but not due again before the breaker half opens.
        return _Result(event, None, address, error=error, retry_after=breaker.remaining)
    return OutgoingMessage(
        event_id=event.id,
        channel=channel,
        address=address,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        data=rendered.data,
    )


def _write_results(
    conn: psycopg.Connection[Any],
    queue: Queue,
    results: list[_Result],
    settings: ProcessingSettings,
    *,
    copy_status: bool = False,
) -> Counts:
    """Write a chunk's outcome, in its transaction: final delivery logs, then retries with backoff.

    A final log is all a delivered event needs: the claim skips events that have one, and the
    status copy sets the status and the error count (from ``tries``) on the event.
    """
    counts = Counts()
    final: list[tuple[_Result, Status]] = []
    retry_ids, retry_errors, retry_at = [], [], []
    now = datetime.now(UTC)
    for r in results:
        errors = r.event.errors + (r.send is not None and r.send.outcome is not Outcome.SENT)
        if r.status is not None:
            final.append((r, r.status))
        elif errors >= settings.max_tries:
            final.append((replace(r, error=f"max tries ({errors}) reached: {r.error}"), Status.FAILED))
        else:
            retry_ids.append(r.event.id)
            retry_errors.append(errors)
            delay = max(backoff(errors, settings.retry_backoff_seconds), r.retry_after)
            retry_at.append(now + timedelta(seconds=delay))
    if final:
        _insert_logs(conn, [_log_row(queue, r, status) for r, status in final])
        if copy_status:
            conn.execute(query("copy_delivered_status", queue), {"ids": [r.event.id for r, _ in final]})
    if retry_ids:
        conn.execute(
            query("schedule_retries", queue),
            {"id": retry_ids, "errors": retry_errors, "next_try": retry_at},
        )
    for _, status in final:
        counts.sent += status == Status.SENT
        counts.ignored += status == Status.IGNORED
        counts.failed += status == Status.FAILED
    counts.retried = len(retry_ids)
    return counts


# Columns of a delivery log, in the order of the statement copy_delivery_logs.
LOG_COLUMNS = (
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


def _log_row(queue: Queue, r: _Result, status: Status) -> tuple[Any, ...]:
    """One delivery log in :data:`LOG_COLUMNS` order."""
    return (
        r.event.id,
        queue,
        int(status),
        r.event.channel,
        r.address,
        r.event.template_id,
        r.event.template_version,
        r.send.message_id if r.send else None,
        r.send.provider_answer if r.send else None,
        r.error,
        # send attempts: the earlier failed ones, plus this one when a message went out
        r.event.errors + (r.send is not None),
    )


def _insert_logs(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Write final delivery logs with COPY; if an event already has one (redelivered after a
    crash), fall back to an insert that keeps the first log of each event."""
    try:
        with conn.transaction(), conn.cursor().copy(query("copy_delivery_logs")) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        log.info(
            "Some of %s events were delivered before (a crashed run): keeping their first log", len(rows)
        )
        conn.execute(
            query("insert_delivery_logs"),
            dict(zip(LOG_COLUMNS, map(list, zip(*rows, strict=True)), strict=True)),
        )


def deliver_shard(
    conn: psycopg.Connection[Any],
    shard: Shard,
    settings: ProcessingSettings,
    *,
    transport_for: TransportFactory,
    renderer: Renderer | None = None,
    time_budget: float | None = None,
    stop: threading.Event | None = None,
    copy_status: bool = False,
    providers: ProviderGuards | None = None,
) -> Counts:
    """Deliver the shard's due events chunk by chunk until none is left or the time budget is spent.

    Each chunk is one transaction: claim (row locks), render and send with up to the provider's
    ``max_connections`` messages in flight, write the final delivery logs and schedule the retries,
    commit. The locks are the
    lease, so nothing is written per event to claim it; ``idle_in_transaction_session_timeout``
    set to ``lease_seconds`` has the server end a session that hangs while holding them (a worker
    that is only slow says it is alive between its messages). A set ``stop`` ends the delivery
    after the messages in flight: what was sent is logged, the rest is released at once. With
    ``copy_status`` (the real-time drain) each chunk also copies its final statuses onto its events.
    ``providers`` (a drain's, kept across its passes) defaults to one for this call.
    """
    renderer = renderer or renderer_for(settings)
    with (
        contextlib.nullcontext(providers) if providers else ProviderGuards(settings, transport_for) as guards
    ):
        return _deliver_chunks(
            conn, shard, settings, transport_for, renderer, guards, time_budget, stop, copy_status
        )


def _deliver_chunks(
    conn: psycopg.Connection[Any],
    shard: Shard,
    settings: ProcessingSettings,
    transport_for: TransportFactory,
    renderer: Renderer,
    providers: ProviderGuards,
    time_budget: float | None,
    stop: threading.Event | None,
    copy_status: bool,
) -> Counts:
    counts = Counts()
    deadline = time.monotonic() + (time_budget or settings.deliver_time_budget_seconds)
    # Keyset: the first chunk starts before every due time; then after the last event claimed.
    params = {**asdict(shard), "limit": settings.deliver_chunk, "after_next_try": "-infinity", "after_id": 0}
    timeout = f"{settings.lease_seconds}s"
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        with conn.transaction():
            conn.execute(query("set_lease_timeout"), {"timeout": timeout})
            # Positional: the statement's columns are ClaimedEvent's fields, in order.
            with conn.cursor(row_factory=args_row(ClaimedEvent)) as cur:
                set_json_loads(_load_ctx, cur)
                events = cur.execute(query("claim_for_delivery", shard.queue), params).fetchall()
            if not events:
                break
            params["after_next_try"], params["after_id"] = events[-1].next_try, events[-1].id
            done = {r[0] for r in conn.execute(query("delivered_already"), {"ids": [e.id for e in events]})}
            if done:
                events = [e for e in events if e.id not in done]
            if events:
                results = _deliver_chunk(
                    conn,
                    events,
                    lambda: transport_for(shard.channel),
                    renderer,
                    settings.lease_seconds / 3,
                    stop,
                    *providers.guards(conn, shard.channel),
                )
                counts.add(_write_results(conn, shard.queue, results, settings, copy_status=copy_status))
    return counts
