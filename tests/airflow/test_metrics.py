"""Airflow metrics: pending gauges, delivery counters, archiving lag; emitting never fails a task."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from messagecenter.airflow import metrics
from messagecenter.core.settings import get_settings
from tests.support.builders import airflow_uri, seed


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []

    def gauge(self, stat: str, value: float, **kw: Any) -> None:
        self.calls.append(("gauge", stat, value, kw.get("tags")))

    def incr(self, stat: str, count: int = 1, **kw: Any) -> None:
        self.calls.append(("incr", stat, count, kw.get("tags")))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorder = Recorder()
    monkeypatch.setattr(metrics, "_stats", lambda: recorder)
    get_settings.cache_clear()
    yield recorder
    get_settings.cache_clear()


def test_delivery_counters_carry_the_queue(recorded: Recorder) -> None:
    metrics.delivered("batch", sent=5, failed=1, ignored=0)
    assert recorded.calls == [
        ("incr", "messagecenter.sent", 5, {"queue": "batch"}),
        ("incr", "messagecenter.failed", 1, {"queue": "batch"}),
    ]


def test_update_events_status_gauges_the_pending_events(
    recorded: Recorder, db_dsn: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from messagecenter.airflow.operators import UpdateEventsStatusOperator

    seed(conn)
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXECUTION", airflow_uri(db_dsn))
    UpdateEventsStatusOperator(task_id="update_events_status").execute(context={})  # type: ignore[arg-type]
    assert ("gauge", "messagecenter.pending.rt", 3, None) in recorded.calls
    assert ("gauge", "messagecenter.pending.batch", 0, None) in recorded.calls


def test_an_archiving_run_gauges_its_lag(
    recorded: Recorder, make_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from messagecenter.airflow.operators import ArchiveEventsOperator

    exec_dsn, control_dsn = make_db(), make_db()
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_PARIS", airflow_uri(exec_dsn) + "?instance_id=1")
    monkeypatch.setenv("AIRFLOW_CONN_MC_CONTROL", airflow_uri(control_dsn))
    with psycopg.connect(exec_dsn) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    context = {"data_interval_start": now - timedelta(hours=2), "data_interval_end": now - timedelta(hours=1)}
    result = ArchiveEventsOperator(task_id="archive_events", instance="paris").execute(context=context)  # type: ignore[arg-type]
    [(kind, stat, lag, _)] = recorded.calls
    assert (kind, stat) == ("gauge", "messagecenter.archiving_lag.paris")
    assert 3600 <= lag < 3700
    assert result["lag_seconds"] == pytest.approx(lag, abs=0.1)


def test_metrics_never_fail_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics.pending({"rt": 1})  # the real Airflow stats, no backend configured: nothing happens

    def broken() -> Any:
        raise RuntimeError("statsd down")

    monkeypatch.setattr(metrics, "_stats", broken)
    metrics.pending({"rt": 1})
    metrics.delivered("rt", sent=1, failed=0, ignored=0)
    metrics.archiving_lag("paris", 1.0)
