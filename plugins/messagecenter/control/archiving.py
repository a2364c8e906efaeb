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

from messagecenter.core.errors import MessageCenterError, TransientError
from messagecenter.core.settings import ArchivingSettings
from messagecenter.core.types import QUEUES
from messagecenter.db.queries import fetch_value, query

log = logging.getLogger(__name__)


class LateWritersError(TransientError):
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
        count, pids = conn.execute(query("open_writers"), {"end": end}).fetchone() or (0, None)
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
    copy_out = query("copy_out_binary", select=select)
    copy_in = query("copy_in_binary", stage=sql.Identifier(stage))
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
    overlap: timedelta = ArchivingSettings.archive_overlap,
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
    now = fetch_value(exec_conn, query("database_now"))
    exec_conn.rollback()
    if end > now:
        raise MessageCenterError(f"the interval ends at {end.isoformat()}, in the future: archive it later")
    wait_for_open_writers(exec_conn, end, open_writer_timeout)
    with control_conn.transaction():
        row = control_conn.execute(query("lock_state"), {"instance": instance}).fetchone()
        low = None if row is None else min(start - overlap, row[0])
        params = {"low": low, "end": end, "instance_id": instance_id}
        control_conn.execute(query("create_event_stage"))
        control_conn.execute(query("create_log_stage"))
        with exec_conn.transaction():  # one snapshot for both queues and the logs
            exec_conn.execute(query("set_snapshot_read_only"))
            for queue in QUEUES:
                select = query("select_events", queue)
                _stream(exec_conn, control_conn, select, {**params, "queue": queue}, "event_stage")
            _stream(exec_conn, control_conn, query("select_logs"), params, "log_stage")
        events = control_conn.execute(query("upsert_events")).rowcount
        logs = control_conn.execute(query("insert_logs")).rowcount
        until = fetch_value(
            control_conn,
            query("record_run"),
            {"instance": instance, "instance_id": instance_id, "start": start, "end": end}
            | {"events": events, "logs": logs},
        )
    with exec_conn.transaction():
        exec_conn.execute(query("set_archive_mark"), {"until": until})
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
