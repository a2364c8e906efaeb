"""Deliver: render and send a shard's linked events, chunk by chunk, and log each final result.

Each chunk is one transaction that holds its events' row locks while it sends: the locks are the
lease. A killed worker's session ends and frees them at once; the server ends a session silent
for ``lease_seconds`` in its transaction (a hung worker), while a live worker says it is alive
between messages. The unique delivery log per event makes a redelivery write no second final log.

This module holds the claim loop (:func:`deliver_shard`) and the chunk sender; the claim itself is
in ``claim``, the writing of results, logs and retries in ``results``, and each provider's circuit
breaker and rate limiter in ``messagecenter.delivery.guards``.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

import psycopg

from messagecenter.core.errors import RenderError, TransientError
from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import ADDRESS_NAMES, Status
from messagecenter.db.queries import query
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, Transport, TransportFactory
from messagecenter.delivery.guards import CircuitBreaker, ProviderGuards
from messagecenter.delivery.pool import TransportPool
from messagecenter.delivery.rate import RateLimiter
from messagecenter.execution.claim import ClaimedEvent, ShardClaim
from messagecenter.execution.results import LogFlusher, Result, write_results
from messagecenter.execution.shards import Counts, Shard
from messagecenter.feedback.quarantine import AddressStatus
from messagecenter.templates.rendering import Renderer
from messagecenter.templates.spec import PublishedTemplate

log = logging.getLogger(__name__)

_STATUS_OF = {Outcome.SENT: Status.SENT, Outcome.PERMANENT: Status.FAILED, Outcome.TRANSIENT: None}


def renderer_for(settings: ProcessingSettings) -> Renderer:
    """A renderer with the settings' bounds on render time and output size."""
    return Renderer(time_limit=settings.render_timeout_seconds, max_output_chars=settings.render_max_chars)


def provider_guards(settings: ProcessingSettings, transport_for: TransportFactory) -> ProviderGuards:
    """The providers' guards of a delivery task or a real-time drain, with the settings' breaker."""
    return ProviderGuards(
        transport_for,
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown=settings.breaker_cooldown_seconds,
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
        contextlib.nullcontext(providers) if providers else provider_guards(settings, transport_for) as guards
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
    claim = ShardClaim(shard, chunk=settings.deliver_chunk, lease_seconds=settings.lease_seconds)
    flusher = LogFlusher(conn, shard.queue, settings.log_flush_seconds)
    try:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            with conn.transaction():
                events = claim.next_chunk(conn)
                if events is None:
                    break
                if events:
                    results = _deliver_chunk(
                        conn,
                        events,
                        lambda: transport_for(shard.channel),
                        renderer,
                        settings.lease_seconds / 3,
                        stop,
                        flusher,
                        *providers.guards(conn, shard.channel),
                    )
                    counts.add(
                        write_results(
                            conn,
                            shard.queue,
                            results,
                            settings,
                            copy_status=copy_status,
                            logged=flusher.logged,
                        )
                    )
                    flusher.logged.clear()
    finally:
        flusher.close()
    return counts


# A message that could not reach its provider (no connection) waits this long before it is claimed
# again: it counts no try, so without a delay the same run would claim it over and over.
NOT_REACHED_RETRY_SECONDS = 10.0


class DatabaseLost(TransientError):
    """The chunk's database connection went away mid-chunk: stop sending, nothing could be logged."""


def _deliver_chunk(
    conn: psycopg.Connection[Any],
    events: list[ClaimedEvent],
    make_transport: Callable[[], Transport],
    renderer: Renderer,
    heartbeat_seconds: float,
    stop: threading.Event | None,
    flusher: LogFlusher | None,
    breaker: CircuitBreaker,
    limiter: RateLimiter | None,
) -> list[Result]:
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
    open after consecutive transient failures or a refused account, answers without calling the
    provider; and the rate limiter, when the provider has one, spaces the sends.
    """
    templates = _templates(conn, events)
    addresses = {e.id: e.address for e in events}
    quarantine = _quarantine_statuses(conn, events[0].channel, addresses.values())
    blocked = {a for a, status in quarantine.items() if status >= AddressStatus.QUARANTINE}
    pool = TransportPool(make_transport(), make_transport)
    sends = _ChunkSends(conn, pool, heartbeat_seconds, breaker, flusher)
    next_db_check = 0.0
    with pool, sends, renderer.time_limits():
        try:
            for position, event in enumerate(events):
                if stop is not None and stop.is_set():
                    left = len(events) - position
                    log.info("Stop requested: %s events of the chunk left for the next run", left)
                    break
                now = time.monotonic()
                if now >= next_db_check:  # every 10 ms at most: a select() per message costs
                    next_db_check = now + 0.01
                    _check_database(conn, position, len(events))
                try:
                    prepared = _prepare(event, addresses[event.id], blocked, templates, renderer, breaker)
                except Exception as exc:  # a bug shown by this event's data: it fails alone
                    prepared = _failed_to_prepare(event, addresses[event.id], exc)
                if isinstance(prepared, Result):
                    sends.results[position] = prepared
                    continue
                if limiter is not None:
                    limiter.wait_turn()
                sends.send(position, Result(event, None, prepared.address), prepared)
            sends.settle(0)
        finally:
            sends.settle(0, beat=False)  # an error ended the chunk: what is in flight still finishes
    results = sends.in_order()
    if len(blocked) < len(quarantine):  # some addresses are With errors: a message sent clears them
        _clear_with_errors(conn, events[0].channel, quarantine, results)
    return results


class _ChunkSends:
    """A chunk's sends and their results, by position in the chunk, with the session kept alive.

    A provider limited to one connection is sent to inline, with no thread to hand the message
    over to; otherwise up to the pool's size of messages are in flight on threads. While sending
    or waiting for sends, a trivial statement every ``heartbeat_seconds`` restarts the server's
    idle-in-transaction clock. Leaving the ``with`` block waits for the threads to end.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        pool: TransportPool,
        heartbeat_seconds: float,
        breaker: CircuitBreaker,
        flusher: LogFlusher | None = None,
    ) -> None:
        self.results: dict[int, Result] = {}
        self._flusher = flusher
        self._conn = conn
        self._pool = pool
        self._heartbeat_seconds = heartbeat_seconds
        self._breaker = breaker
        self._in_flight: dict[Future[SendResult], tuple[int, Result]] = {}
        self._next_beat = time.monotonic() + heartbeat_seconds
        self._executor = (
            ThreadPoolExecutor(pool.size, thread_name_prefix="mc-send") if pool.size > 1 else None
        )

    def send(self, position: int, pending: Result, message: OutgoingMessage) -> None:
        """Send ``message`` inline, or hand it to a thread once fewer than the pool's size are in
        flight; then say the worker is alive if it is time."""
        if self._executor is None:
            try:
                self.results[position] = _result_of(pending, self._pool.send(message), self._breaker)
            except Exception as exc:
                self.results[position] = _failed_in_transport(pending, exc)
        else:
            self.settle(self._pool.size - 1)
            self._in_flight[self._executor.submit(self._pool.send, message)] = (position, pending)
        self.keep_alive()

    def keep_alive(self) -> None:
        """Say the worker is alive if it is time, and commit the logs of what was sent if it is time."""
        if self._flusher is not None:
            self._flusher.offer(self.results.values())
        if time.monotonic() >= self._next_beat:
            self._conn.execute(query("keep_alive"))  # restarts the server's idle-in-transaction clock
            self._next_beat = time.monotonic() + self._heartbeat_seconds

    def settle(self, most_in_flight: int, *, beat: bool = True) -> None:
        """Collect finished sends until at most ``most_in_flight`` remain, staying alive meanwhile."""
        in_flight = self._in_flight
        while len(in_flight) > most_in_flight:
            done, _ = wait(
                in_flight, timeout=self._heartbeat_seconds if beat else None, return_when=FIRST_COMPLETED
            )
            for future in done:
                position, pending = in_flight.pop(future)
                self.results[position] = _sent(pending, future, self._breaker)
            if beat:
                self.keep_alive()

    def in_order(self) -> list[Result]:
        """The results, in the chunk's order."""
        return [self.results[position] for position in sorted(self.results)]

    def __enter__(self) -> _ChunkSends:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _templates(
    conn: psycopg.Connection[Any], events: list[ClaimedEvent]
) -> dict[tuple[int, int], PublishedTemplate]:
    keys = {(e.template_id, e.template_version) for e in events}
    rows = conn.execute(
        query("published_templates"),
        {"template_id": [k[0] for k in keys], "version": [k[1] for k in keys]},
    ).fetchall()
    return {(r[1], r[2]): PublishedTemplate(*r) for r in rows}


def _quarantine_statuses(
    conn: psycopg.Connection[Any], channel: int, addresses: Iterable[str | None]
) -> dict[str, int]:
    """The chunk's addresses that are not Valid on its channel, with their quarantine status."""
    params = {"channel": channel, "addresses": [a for a in addresses if a]}
    return {r[0]: r[1] for r in conn.execute(query("quarantined"), params)}


def _clear_with_errors(
    conn: psycopg.Connection[Any], channel: int, quarantine: dict[str, int], results: list[Result]
) -> None:
    """Campaign's rule: a successful delivery to an address With errors makes it Valid again."""
    sent = {r.address for r in results if r.status == Status.SENT and r.address}
    cleared = [a for a in sent if quarantine.get(a) == AddressStatus.WITH_ERRORS]
    if cleared:
        conn.execute(query("clear_with_errors"), {"channel": channel, "addresses": cleared})


def _check_database(conn: psycopg.Connection[Any], position: int, total: int) -> None:
    """Raise :class:`DatabaseLost` if the server has ended the chunk's session."""
    if _database_lost(conn):
        raise DatabaseLost(
            f"the database connection was lost after {position} of {total} events of a chunk: sending stopped"
        )


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


def _prepare(
    event: ClaimedEvent,
    address: str | None,
    blocked: set[str],
    templates: dict[tuple[int, int], PublishedTemplate],
    renderer: Renderer,
    breaker: CircuitBreaker,
) -> Result | OutgoingMessage:
    """One event's checks and render: the message to send, or the result it already has."""
    channel = event.channel
    problem = event.load_problem()
    if problem is not None:
        return Result(event, Status.FAILED, address, error=problem)
    if address is None:
        return Result(event, Status.IGNORED, error=f"no {ADDRESS_NAMES[channel]}")
    if address in blocked:
        return Result(event, Status.IGNORED, address, error="address in quarantine")
    template = templates.get((event.template_id, event.template_version))
    if template is None:
        return Result(event, Status.FAILED, address, error="template version no longer published")
    try:
        rendered = renderer.render(template, event=event.template_fields(), ctx=event.ctx or {})
    except RenderError as exc:
        return Result(event, Status.FAILED, address, error=f"render error: {exc}")
    if rendered.is_empty(channel):
        return Result(event, Status.IGNORED, address, error="empty message")
    if not breaker.allow():
        error = f"provider failing: {breaker.reason}, not tried"
        # Not a try (the error count stays), but not due again before the breaker half opens.
        return Result(event, None, address, error=error, retry_after=breaker.remaining)
    return OutgoingMessage(
        event_id=event.id,
        channel=channel,
        address=address,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        data=rendered.data,
        list_unsubscribe=template.list_unsubscribe,
        badge=template.badge,
        sound=template.sound,
        collapse_id=template.collapse_id,
        thread_id=template.thread_id,
    )


def _failed_to_prepare(event: ClaimedEvent, address: str | None, exc: Exception) -> Result:
    """An unexpected exception while preparing an event (a bug its data shows) fails it alone."""
    log.error("Event %s failed on an unexpected error", event.id, exc_info=exc)
    return Result(event, Status.FAILED, address, error=f"internal error: {type(exc).__name__}: {exc}")


def _sent(pending: Result, future: Future[SendResult], breaker: CircuitBreaker) -> Result:
    """The result of a send handed to a thread (see :func:`_result_of`)."""
    try:
        sent = future.result()
    except Exception as exc:
        return _failed_in_transport(pending, exc)
    return _result_of(pending, sent, breaker)


def _result_of(pending: Result, sent: SendResult, breaker: CircuitBreaker) -> Result:
    """Sent, Failed (permanent) or a retry (transient), from the provider's answer."""
    if not sent.attempted:  # never reached the provider: retried, but neither a try nor a failure
        return replace(pending, error=sent.error, retry_after=NOT_REACHED_RETRY_SECONDS)
    if sent.extra.get("account_refused"):
        breaker.trip("the provider refused the account")
    else:
        breaker.record(sent.outcome)
    retry_after = sent.extra.get("retry_after") if sent.extra else None  # HTTP 429 / 503
    return Result(
        pending.event, _STATUS_OF[sent.outcome], pending.address, sent, sent.error, float(retry_after or 0.0)
    )


def _failed_in_transport(pending: Result, exc: Exception) -> Result:
    """An unexpected exception in the transport fails the event, final: it is never resent."""
    log.error("Event %s failed on an unexpected error in the transport: %r", pending.event.id, exc)
    return replace(pending, status=Status.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
