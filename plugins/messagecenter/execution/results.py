"""Results: what a delivery chunk writes, while it sends (:class:`LogFlusher`) and when it is done.

An event with a final result (Sent, Ignored, Failed, or out of tries) gets its final delivery log;
the others are scheduled for a retry with backoff. The unique delivery log per event makes a
redelivery write no second final log. An address the provider said is dead (a push token
unregistered) is put in quarantine in the same transaction, so the next event to it is Ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from messagecenter.core.settings import ProcessingSettings, get_settings
from messagecenter.core.types import Queue, Status
from messagecenter.db.queries import query
from messagecenter.delivery.base import Outcome, SendResult
from messagecenter.execution.claim import ClaimedEvent
from messagecenter.execution.shards import Counts
from messagecenter.feedback.quarantine import AddressStatus
from messagecenter.feedback.types import FailureReason

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True)
class Result:
    """One event's result in a chunk: final (a status), or a transient error to retry."""

    event: ClaimedEvent
    status: Status | None  # SENT / IGNORED / FAILED, or None for a transient error
    address: str | None = None
    send: SendResult | None = None
    error: str | None = None
    retry_after: float = 0.0  # seconds: no retry before, whatever the backoff says


def backoff(errors: int, base_seconds: float) -> float:
    """Seconds before try ``errors + 1``: base, 2x base, 4x base..., capped at one hour."""
    return min(base_seconds * 2 ** max(errors - 1, 0), _MAX_BACKOFF_SECONDS)


def write_results(
    conn: psycopg.Connection[Any],
    queue: Queue,
    results: list[Result],
    settings: ProcessingSettings,
    *,
    copy_status: bool = False,
    logged: Container[int] = frozenset(),
) -> Counts:
    """Write a chunk's outcome, in its transaction: final delivery logs, then retries with backoff.

    A final log is all a delivered event needs: the claim skips events that have one, and the
    status copy sets the status and the error count (from ``tries``) on the event. ``logged``: the
    events whose logs a :class:`LogFlusher` committed already while the chunk was sending.
    """
    counts = Counts()
    final: list[tuple[Result, Status]] = []
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
        rows = [log_row(queue, r, status) for r, status in final if r.event.id not in logged]
        if rows:
            insert_logs(conn, rows)
        quarantine_dead_addresses(conn, [r for r, status in final if status == Status.FAILED], now)
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


def quarantine_dead_addresses(conn: psycopg.Connection[Any], failed: list[Result], at: datetime) -> int:
    """Quarantine at once, in one statement, the addresses whose provider said they are dead
    (``dead_address`` in the send's extra: FCM UNREGISTERED, APNs 410); how many there were."""
    dead: dict[tuple[int, str], Result] = {}  # one row per address: a statement changes a row once
    for r in failed:
        if r.send is not None and r.send.extra.get("dead_address") and r.address:
            dead.setdefault((r.event.channel, r.address), r)
    if not dead:
        return 0
    rules = get_settings().feedback
    conn.execute(
        query("record_address_feedback"),
        {
            "channel": [channel for channel, _ in dead],
            "address": [address for _, address in dead],
            "status": [int(AddressStatus.QUARANTINE)] * len(dead),
            "failure_reason": [
                int(r.send.extra.get("failure_reason", FailureReason.USER_UNKNOWN))
                for r in dead.values()
                if r.send
            ],
            "reason": [f"refused at send: {(r.error or '')[:200]}" for r in dead.values()],
            "at": [at] * len(dead),
            "source": [str(r.send.extra.get("source") or "send") for r in dead.values() if r.send],
            "max_errors": rules.max_errors,
            "significant_seconds": rules.significant_error.total_seconds(),
        },
    )
    log.info("%s push token(s) or address(es) dead at send: in quarantine", len(dead))
    return len(dead)


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


def log_row(queue: Queue, r: Result, status: Status) -> tuple[Any, ...]:
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


def insert_logs(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
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


class LogFlusher:
    """Commit the logs of the messages a chunk sent while it is still sending, in small batches.

    The chunk's transaction holds its events' row locks until it ends; logs written in it die with
    it, and a database restart mid-chunk would have the whole chunk sent again. The flusher writes
    the final logs every ``interval`` seconds in short transactions of a connection of its own
    (``insert_delivery_logs``: a log already there is kept), so a restart re-sends at most the
    messages in flight and one interval's worth: the claim skips events that have a log. A flusher
    that cannot write (the database is gone) stops trying; the chunk's own write covers the rest.
    """

    def __init__(self, conn: psycopg.Connection[Any], queue: Queue, interval: float) -> None:
        self._source = conn
        self._queue = queue
        self._interval = interval
        self._conn: psycopg.Connection[Any] | None = None
        self._due = time.monotonic() + interval
        self._broken = False
        self.logged: set[int] = set()

    def offer(self, results: Iterable[Result], *, now: float | None = None) -> None:
        """Commit the final results not logged yet, if the interval has passed."""
        now = time.monotonic() if now is None else now
        if self._broken or now < self._due:
            return
        self._due = now + self._interval
        rows = [
            log_row(self._queue, r, r.status)
            for r in results
            if r.status is not None and r.event.id not in self.logged
        ]
        if not rows:
            return
        try:
            conn = self._connection()
            conn.execute(
                query("insert_delivery_logs"),
                dict(zip(LOG_COLUMNS, map(list, zip(*rows, strict=True)), strict=True)),
            )
        except psycopg.Error as exc:
            log.warning("Delivery logs not committed early (%s): the chunk writes them itself", exc)
            self._broken = True
            return
        self.logged.update(row[0] for row in rows)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            # The chunk's own parameters, password included (PQconninfo), in autocommit.
            params = {o.keyword.decode(): o.val.decode() for o in self._source.pgconn.info if o.val}
            params["application_name"] = f"{params.get('application_name') or 'messagecenter'} logs"
            self._conn = psycopg.connect(make_conninfo(**params), autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
