"""Copy an execution instance's events and delivery logs into the control archive, per data interval.

An archiving run for ``[start, end)`` streams the rows last modified in ``[start - overlap, end)``
from the execution database with binary ``COPY ... TO STDOUT`` straight into a staging table on
control (``COPY ... FROM STDIN``), then upserts them into ``mc.event_histo`` /
``mc.delivery_log_histo`` with one statement each. Memory stays bounded whatever the volume (the
bytes flow through in small buffers), and a rerun changes nothing (upserts keep the newest row).

Late commits: ``last_modified`` is the start time of the writing transaction, so a row stamped
before ``end`` may commit after the run. Before copying, the run waits until no transaction that
started before ``end`` is still open on the execution database (``pg_stat_activity``); the overlap
re-reads the previous ``overlap`` as a second line of defence. Each run also reads from the
previous run's end when that is earlier, so a failed run leaves no gap, and ``archived_until``
(written back on the execution database) tells ``mcCleanup`` what it may purge.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from messagecenter.config import QUEUES
from messagecenter.exceptions import MessageCenterError
from messagecenter.queries import query

log = logging.getLogger(__name__)
DEFAULT_OVERLAP = timedelta(minutes=15)


class LateWritersError(MessageCenterError):
    """A transaction that started before the interval's end is still open: the run is retried later."""


@dataclass(frozen=True)
class ArchiveResult:
    """What one archiving run did: rows new or changed in the archive, and the period now archived."""

    instance: str
    start: datetime
    end: datetime
    low: datetime | None
    events: int
    logs: int
    archived_until: datetime
    seconds: float


def wait_for_open_writers(conn: psycopg.Connection[Any], end: datetime, timeout: float) -> None:
    """Wait until no transaction that started before ``end`` is open on this database.

    :raises LateWritersError: some are still open after ``timeout`` seconds (Airflow retries the task).
    """
    deadline = time.monotonic() + timeout
    while True:
        count, pids = conn.execute(query("archiving", "open_writers"), {"end": end}).fetchone()  # type: ignore[misc]
        conn.rollback()
        if not count:
            return
        if time.monotonic() >= deadline:
            raise LateWritersError(
                f"{count} transaction(s) that started before {end.isoformat()} are still open on the "
                f"execution database (pids {pids}); their rows would be missed, so the run waits for them"
            )
        log.info("Waiting for %s transaction(s) started before %s (pids %s)", count, end.isoformat(), pids)
        time.sleep(min(1.0, max(timeout / 10, 0.05)))


def _stream(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    select: sql.Composable,
    params: dict[str, Any],
    stage: str,
) -> None:
    """Binary COPY from ``select`` on ``source`` into temp table ``stage`` on ``target``."""
    copy_out = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(select)
    copy_in = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(stage))
    with source.cursor().copy(copy_out, params) as out, target.cursor().copy(copy_in) as into:
        for buffer in out:
            into.write(buffer)


def archive_interval(
    exec_conn: psycopg.Connection[Any],
    control_conn: psycopg.Connection[Any],
    *,
    instance: str,
    instance_id: int,
    start: datetime,
    end: datetime,
    overlap: timedelta = DEFAULT_OVERLAP,
    open_writer_timeout: float = 60.0,
) -> ArchiveResult:
    """Archive what ``instance`` changed in ``[start, end)`` into control; idempotent.

    The run reads from ``start - overlap``, or from the instance's ``archived_until`` when that is
    earlier (a failed run left a gap: this run closes it), or from the beginning on the first run.

    :param overlap: also re-read this much before ``start`` (second line of defence for late commits).
    :param open_writer_timeout: how long to wait for transactions older than ``end`` to finish.
    :raises LateWritersError: such a transaction is still open after the timeout.
    """
    began = time.monotonic()
    now = exec_conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    exec_conn.rollback()
    if end > now:
        raise MessageCenterError(f"the interval ends at {end.isoformat()}, in the future: archive it later")
    wait_for_open_writers(exec_conn, end, open_writer_timeout)
    with control_conn.transaction():
        row = control_conn.execute(query("archiving", "lock_state"), {"instance": instance}).fetchone()
        low = None if row is None else min(start - overlap, row[0])
        params = {"low": low, "end": end, "instance_id": instance_id}
        control_conn.execute(query("archiving", "create_event_stage"))
        control_conn.execute(query("archiving", "create_log_stage"))
        with exec_conn.transaction():  # one snapshot for both queues and the logs
            exec_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for queue in QUEUES:
                select = query("archiving", "select_events", queue)
                _stream(exec_conn, control_conn, select, {**params, "queue": queue}, "event_stage")
            _stream(exec_conn, control_conn, query("archiving", "select_logs"), params, "log_stage")
        events = control_conn.execute(query("archiving", "upsert_events")).rowcount
        logs = control_conn.execute(query("archiving", "insert_logs")).rowcount
        until = control_conn.execute(
            query("archiving", "record_run"),
            {"instance": instance, "instance_id": instance_id, "start": start, "end": end}
            | {"events": events, "logs": logs},
        ).fetchone()[0]  # type: ignore[index]
    with exec_conn.transaction():
        exec_conn.execute(query("archiving", "set_archive_mark"), {"until": until})
    result = ArchiveResult(instance, start, end, low, events, logs, until, time.monotonic() - began)
    log.info(
        "Archived %s [%s, %s) (read from %s): %s events and %s delivery logs new or changed "
        "in %.2f s (%.0f rows/s); archived until %s",
        instance,
        start.isoformat(),
        end.isoformat(),
        low.isoformat() if low else "the beginning",
        events,
        logs,
        result.seconds,
        (events + logs) / max(result.seconds, 1e-6),
        until.isoformat(),
    )
    return result


def purge_archived(
    conn: psycopg.Connection[Any], *, retention: timedelta, batch_size: int = 10_000
) -> dict[str, int]:
    """Delete final events and delivery logs older than ``retention`` that control has archived.

    Only rows last modified before the archived period written back by the archiving runs
    (``mc.archive_mark``) are eligible: an event that was never archived is never purged,
    whatever its age. Deletes run in bounded batches, each in its own transaction.
    """
    counts = {"rt": 0, "batch": 0, "delivery_log": 0}
    mark = conn.execute("SELECT archived_until FROM mc.archive_mark").fetchone()
    conn.rollback()
    if mark is None:
        log.warning("Nothing was archived yet: nothing is purged")
        return counts
    params = {"retention": retention.total_seconds(), "limit": batch_size}
    statements = {
        "rt": query("archiving", "purge_events", "rt"),
        "batch": query("archiving", "purge_events", "batch"),
        "delivery_log": query("archiving", "purge_logs"),
    }
    for name, statement in statements.items():
        while True:
            with conn.transaction():
                deleted = conn.execute(statement, params).rowcount
            counts[name] += deleted
            if deleted < batch_size:
                break
            log.info("Purged %s %s rows so far", counts[name], name)
    log.info(
        "Purged %s rt events, %s batch events and %s delivery logs older than %s (archived until %s)",
        counts["rt"],
        counts["batch"],
        counts["delivery_log"],
        retention,
        mark[0].isoformat(),
    )
    return counts
