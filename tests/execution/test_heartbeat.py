"""Workflow heartbeats: recorded by the execution workflows on their own database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from messagecenter.core.settings import get_settings
from messagecenter.execution import heartbeat
from messagecenter.execution.heartbeat import Pulse, read_heartbeats, record_heartbeat
from messagecenter.monitoring.heartbeats import never_reported, stale_workflows
from tests.support.builders import airflow_uri


@pytest.fixture
def exec_env(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXECUTION", airflow_uri(db_dsn))
    monkeypatch.setenv("MC_HEARTBEAT_SECONDS", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_record_then_read_counts_runs_and_rows(conn: psycopg.Connection) -> None:
    assert read_heartbeats(conn) == {}
    record_heartbeat(conn, "batchEventsProcessing", 10, 0.5)
    record_heartbeat(conn, "batchEventsProcessing", 3, 0.25)
    beat = read_heartbeats(conn)["batchEventsProcessing"]
    assert (beat.last_rows, beat.last_seconds, beat.runs, beat.total_rows) == (3, 0.25, 2, 13)
    assert 0 <= beat.age_seconds < 5
    assert beat.to_json()["runs"] == 2


def test_touch_moves_the_time_only(conn: psycopg.Connection) -> None:
    heartbeat.touch_heartbeat(conn, "rtEventsProcessing")
    first = read_heartbeats(conn)["rtEventsProcessing"]
    assert (first.runs, first.last_rows) == (0, 0)
    record_heartbeat(conn, "rtEventsProcessing", 5, 1.0)
    heartbeat.touch_heartbeat(conn, "rtEventsProcessing")
    beat = read_heartbeats(conn)["rtEventsProcessing"]
    assert (beat.runs, beat.last_rows) == (1, 5)
    assert beat.last_run > first.last_run


def test_stale_workflows_names_the_old_never_reported_the_missing(conn: psycopg.Connection) -> None:
    record_heartbeat(conn, "rtEventsProcessing", 0, 0)
    record_heartbeat(conn, "updateEventsStatus", 0, 0)
    conn.execute(
        "UPDATE mc.workflow_heartbeat SET last_run = now() - interval '1 hour' "
        "WHERE workflow = 'updateEventsStatus'"
    )
    beats = read_heartbeats(conn)
    assert stale_workflows(beats, 600) == ["updateEventsStatus"]
    assert stale_workflows(beats, 7200) == []
    assert never_reported(beats) == ["batchEventsProcessing"]


def test_pulse_refreshes_the_heartbeat_while_a_pass_runs(db_dsn: str, conn: psycopg.Connection) -> None:
    def connect() -> Any:
        return psycopg.connect(db_dsn)

    with Pulse(connect, "rtEventsProcessing", every_seconds=0.1) as pulse:
        time.sleep(0.5)
    assert pulse.beats >= 3
    assert read_heartbeats(conn)["rtEventsProcessing"].age_seconds < 1


def test_pulse_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    def connect() -> Any:
        raise psycopg.OperationalError("database gone")

    with Pulse(connect, "rtEventsProcessing", every_seconds=0.1) as pulse:
        time.sleep(0.1)
    assert pulse.beats == 0
    assert "Heartbeat of rtEventsProcessing not recorded: database gone" in caplog.text


def test_status_and_cleanup_operators_record_their_workflow(exec_env: None, conn: psycopg.Connection) -> None:
    from messagecenter.airflow.operators import PurgeArchivedOperator, UpdateEventsStatusOperator

    UpdateEventsStatusOperator(task_id="update_events_status").execute(context={})  # type: ignore[arg-type]
    PurgeArchivedOperator(task_id="purge_archived").execute(context={})  # type: ignore[arg-type]
    beats = read_heartbeats(conn)
    assert set(beats) == {"updateEventsStatus", "mcCleanup"}
    assert beats["updateEventsStatus"].runs == 1


def test_batch_split_records_the_batch_workflow_not_the_rt_one(
    exec_env: None, conn: psycopg.Connection
) -> None:
    from messagecenter.airflow.operators import SplitQueueOperator

    SplitQueueOperator(task_id="split_queue", event_queue="batch").execute(context={})  # type: ignore[arg-type]
    SplitQueueOperator(task_id="split_rt", event_queue="rt").execute(context={})  # type: ignore[arg-type]
    assert set(read_heartbeats(conn)) == {"batchEventsProcessing"}


def test_rt_drain_is_seen_alive_while_it_runs_then_records_its_pass(
    exec_env: None, conn: psycopg.Connection
) -> None:
    from messagecenter.airflow.operators import DrainRealtimeOperator

    seen: list[dict[str, Any]] = []

    def watch() -> None:  # the first heartbeat seen, while the drain runs
        deadline = time.monotonic() + 10
        with psycopg.connect(conn.info.dsn, autocommit=True) as other:
            while not seen and time.monotonic() < deadline:
                if beats := read_heartbeats(other):
                    seen.append({k: v.runs for k, v in beats.items()})
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    DrainRealtimeOperator(task_id="drain_rt_queue", lifetime_seconds=3).execute(context={})  # type: ignore[arg-type]
    watcher.join()
    assert seen == [{"rtEventsProcessing": 0}]  # alive, no pass finished yet
    assert read_heartbeats(conn)["rtEventsProcessing"].runs == 1


def test_a_missing_heartbeat_table_never_fails_the_task(
    exec_env: None, conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    from messagecenter.airflow.operators import UpdateEventsStatusOperator

    conn.execute("DROP TABLE mc.workflow_heartbeat")
    result = UpdateEventsStatusOperator(task_id="update_events_status").execute(context={})  # type: ignore[arg-type]
    assert result["copied"] == 0
    assert "Heartbeat of updateEventsStatus not recorded" in capsys.readouterr().out  # Airflow's log
