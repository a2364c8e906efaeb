"""Archiving an execution instance into control, and purging only what is archived (real PostgreSQL)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from messagecenter.control.archiving import LateWritersError
from messagecenter.execution.cleanup import purge_archived
from tests.support.builders import archive, db_now, push_sms

EVENT_COLUMNS = "id, event_type, channel, email, ctx::text, created, status, errors, last_modified"


def fingerprint(
    conn: psycopg.Connection[Any], table: str, where: str = "true", params: Any = None
) -> tuple[int, str]:
    """Row count and md5 of the rows, in id order: equal only if the same rows hold the same values."""
    row = conn.execute(
        f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) "
        f"FROM (SELECT {EVENT_COLUMNS} FROM {table} WHERE {where}) AS t",
        params,
    ).fetchone()
    return row[0], row[1]  # type: ignore[index]


def test_archive_run_copies_exactly_the_interval_rows(dbs: Any) -> None:
    exec_conn, control = dbs
    push_sms(exec_conn, "rt", 3)
    t1 = db_now(exec_conn)
    first = archive(exec_conn, control, t1 - timedelta(hours=1), t1)  # first run: since the beginning
    assert (first.events, first.low) == (3, None)
    time.sleep(0.01)
    start = db_now(exec_conn)
    rt_ids = push_sms(exec_conn, "rt", 5)
    batch_ids = push_sms(exec_conn, "batch", 4)
    exec_conn.execute(
        "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address)"
        " VALUES (%s, 'rt', 2, 1, 'x')",
        (rt_ids[0],),
    )
    exec_conn.execute("UPDATE mc.rt_event SET status = 2, last_modified = now() WHERE id = %s", (rt_ids[0],))
    end = db_now(exec_conn)
    push_sms(exec_conn, "rt", 2)  # after the interval: not copied

    result = archive(exec_conn, control, start, end, overlap=timedelta(0))

    assert (result.events, result.logs) == (9, 1)
    assert result.archived_until == end
    for queue in ("rt", "batch"):
        interval = "last_modified >= %(s)s AND last_modified < %(e)s"
        source = fingerprint(exec_conn, f"mc.{queue}_event", interval, {"s": start, "e": end})
        archived = fingerprint(
            control, "mc.event_histo", f"queue = '{queue}' AND {interval}", {"s": start, "e": end}
        )
        assert source == archived
    assert control.execute("SELECT count(*) FROM mc.event_histo").fetchone()[0] == 12  # type: ignore[index]
    state = control.execute(
        "SELECT archived_until, events_copied, total_events, total_logs FROM mc.archive_state"
    ).fetchone()
    assert state == (end, 9, 12, 1)
    assert exec_conn.execute("SELECT archived_until FROM mc.archive_mark").fetchone()[0] == end  # type: ignore[index]
    assert (
        sorted(r[0] for r in control.execute("SELECT id FROM mc.event_histo WHERE queue = 'batch'"))
        == batch_ids
    )


def test_rerun_changes_nothing_and_a_later_state_is_updated(dbs: Any) -> None:
    exec_conn, control = dbs
    ids = push_sms(exec_conn, "batch", 3)
    end = db_now(exec_conn)
    archive(exec_conn, control, end - timedelta(hours=1), end)
    before = fingerprint(control, "mc.event_histo")
    again = archive(exec_conn, control, end - timedelta(hours=1), end)
    assert (again.events, again.logs) == (0, 0)
    assert fingerprint(control, "mc.event_histo") == before

    exec_conn.execute("UPDATE mc.batch_event SET status = 5, last_modified = now() WHERE id = %s", (ids[1],))
    end2 = db_now(exec_conn)
    later = archive(exec_conn, control, end, end2)
    assert later.events == 1
    assert control.execute("SELECT status FROM mc.event_histo WHERE id = %s", (ids[1],)).fetchone()[0] == 5  # type: ignore[index]
    # Re-archiving the older period does not bring the older state back.
    archive(exec_conn, control, end - timedelta(hours=1), end)
    assert control.execute("SELECT status FROM mc.event_histo WHERE id = %s", (ids[1],)).fetchone()[0] == 5  # type: ignore[index]


def test_a_row_committed_after_the_interval_end_is_waited_for(dbs: Any, db_dsn: str, make_db: Any) -> None:
    exec_conn, control = dbs
    push_sms(exec_conn, "rt", 1)
    first_end = db_now(exec_conn)
    archive(exec_conn, control, first_end - timedelta(hours=1), first_end)
    exec_dsn = exec_conn.info.dsn
    late = psycopg.connect(exec_dsn)
    late.execute("SELECT 1")  # the transaction starts now, before the interval's end
    [late_id] = push_sms(late, "rt", 1)  # written but not committed
    end = db_now(exec_conn)
    # A run that cannot wait says why, and archives nothing (Airflow retries it).
    with pytest.raises(LateWritersError, match="still open"):
        archive(exec_conn, control, first_end, end, open_writer_timeout=0)
    threading.Timer(0.5, late.commit).start()
    result = archive(exec_conn, control, first_end, end, overlap=timedelta(0), open_writer_timeout=30)
    late.close()
    assert result.events == 1
    assert control.execute("SELECT id FROM mc.event_histo WHERE id = %s", (late_id,)).fetchone() is not None


def test_a_failed_run_leaves_no_gap(dbs: Any) -> None:
    exec_conn, control = dbs
    t0 = db_now(exec_conn)
    archive(exec_conn, control, t0 - timedelta(hours=1), t0)
    ids = push_sms(exec_conn, "rt", 2)  # modified in the interval whose run "failed"
    t1 = db_now(exec_conn)
    time.sleep(0.01)
    t2 = db_now(exec_conn)
    result = archive(exec_conn, control, t1, t2, overlap=timedelta(0))  # reads from t0, the last end
    assert result.low == t0
    assert sorted(r[0] for r in control.execute("SELECT id FROM mc.event_histo")) == ids


def test_an_interval_in_the_future_is_refused(dbs: Any) -> None:
    exec_conn, control = dbs
    now = db_now(exec_conn)
    with pytest.raises(Exception, match="in the future"):
        archive(exec_conn, control, now, now + timedelta(hours=1))
    assert control.execute("SELECT count(*) FROM mc.archive_state").fetchone()[0] == 0  # type: ignore[index]


def test_cleanup_never_purges_an_unarchived_event(dbs: Any) -> None:
    exec_conn, control = dbs
    old = push_sms(exec_conn, "rt", 4)
    exec_conn.execute(
        "UPDATE mc.rt_event SET status = 2, last_modified = now() - interval '40 days' WHERE id = ANY(%s)",
        (old,),
    )
    # Nothing archived yet: nothing purged, however old.
    assert purge_archived(exec_conn, retention=timedelta(days=30)) == {"rt": 0, "batch": 0, "delivery_log": 0}
    end = db_now(exec_conn)
    archive(exec_conn, control, end - timedelta(hours=1), end)
    # Archived, but one changed since (its current state is not archived) and one is not final.
    exec_conn.execute(
        "UPDATE mc.rt_event SET status = 1, last_modified = now() - interval '40 days' WHERE id = %s",
        (old[1],),
    )
    exec_conn.execute("UPDATE mc.rt_event SET errors = 1, last_modified = now() WHERE id = %s", (old[2],))
    counts = purge_archived(exec_conn, retention=timedelta(days=30), batch_size=1)
    assert counts["rt"] == 2
    left = sorted(r[0] for r in exec_conn.execute("SELECT id FROM mc.rt_event"))
    assert left == [old[1], old[2]]
    assert control.execute("SELECT count(*) FROM mc.event_histo").fetchone()[0] == 4  # type: ignore[index]
