"""Delivery feedback in Airflow's metrics: the rate and quarantine gauges of updateEventsStatus, the
feedback counters; emitting never fails a task."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from messagecenter.airflow import metrics
from messagecenter.core.settings import get_settings
from messagecenter.monitoring.indicators import FeedbackRates
from tests.support.builders import airflow_uri, seed_feedback


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []

    def gauge(self, stat: str, value: float, **kw: Any) -> None:
        self.calls.append(("gauge", stat, value, kw.get("tags")))

    def incr(self, stat: str, count: int = 1, **kw: Any) -> None:
        self.calls.append(("incr", stat, count, kw.get("tags")))

    def feedback_gauges(self) -> dict[str, Any]:
        return {
            stat: value
            for kind, stat, value, _ in self.calls
            if kind == "gauge" and not stat.startswith("messagecenter.pending.")
        }


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorder = Recorder()
    monkeypatch.setattr(metrics, "_stats", lambda: recorder)
    get_settings.cache_clear()
    yield recorder
    get_settings.cache_clear()


def test_rates_and_quarantine_are_gauges(recorded: Recorder) -> None:
    metrics.feedback_figures(
        FeedbackRates(sent=400, bounced=8, complained=2), {"with_errors": 3, "quarantine": 5, "denylisted": 0}
    )
    assert recorded.calls == [
        ("gauge", "messagecenter.bounce_rate", 2.0, None),
        ("gauge", "messagecenter.complaint_rate", 0.5, None),
        ("gauge", "messagecenter.quarantine.with_errors", 3, None),
        ("gauge", "messagecenter.quarantine.quarantine", 5, None),
        ("gauge", "messagecenter.quarantine.denylisted", 0, None),  # back to zero, not left stale
    ]


def test_feedback_applied_is_counted_per_kind(recorded: Recorder) -> None:
    metrics.feedback("mailbox", Counter({"failed": 3, "complaint": 1, "delivered": 0}))
    assert recorded.calls == [
        ("incr", "messagecenter.feedback.failed", 3, {"source": "mailbox"}),
        ("incr", "messagecenter.feedback.complaint", 1, {"source": "mailbox"}),
    ]


def run_update_events_status(db_dsn: str, monkeypatch: pytest.MonkeyPatch, context: dict[str, Any]) -> Any:
    from messagecenter.airflow.operators import UpdateEventsStatusOperator

    monkeypatch.setenv("AIRFLOW_CONN_MC_EXECUTION", airflow_uri(db_dsn))
    return UpdateEventsStatusOperator(task_id="update_events_status").execute(context=context)  # type: ignore[arg-type]


def test_update_events_status_gauges_the_feedback_of_the_window(
    recorded: Recorder, db_dsn: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_feedback(conn)
    run_update_events_status(db_dsn, monkeypatch, {})
    assert recorded.feedback_gauges() == {
        "messagecenter.bounce_rate": 3.0,
        "messagecenter.complaint_rate": 0.5,
        "messagecenter.quarantine.with_errors": 0,
        "messagecenter.quarantine.quarantine": 6,
        "messagecenter.quarantine.denylisted": 2,
    }
    assert ("gauge", "messagecenter.pending.rt", 0, None) in recorded.calls


def test_the_feedback_gauges_are_sent_every_fifth_minute(
    recorded: Recorder, db_dsn: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_feedback(conn)
    run_update_events_status(db_dsn, monkeypatch, {"logical_date": datetime(2026, 12, 1, 10, 3, tzinfo=UTC)})
    assert recorded.feedback_gauges() == {}
    assert ("gauge", "messagecenter.pending.batch", 0, None) in recorded.calls
    run_update_events_status(db_dsn, monkeypatch, {"logical_date": datetime(2026, 12, 1, 10, 5, tzinfo=UTC)})
    assert recorded.feedback_gauges()["messagecenter.complaint_rate"] == 0.5


def test_unreadable_feedback_never_fails_the_task(
    recorded: Recorder,
    db_dsn: str,
    conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conn.execute("ALTER TABLE mc.quarantine RENAME TO quarantine_elsewhere")
    result = run_update_events_status(db_dsn, monkeypatch, {})
    assert result is not None
    assert recorded.feedback_gauges() == {}
    assert ("gauge", "messagecenter.pending.rt", 0, None) in recorded.calls  # the rest still goes out
    assert 'Feedback metrics not sent: relation "mc.quarantine" does not exist' in capsys.readouterr().out

    def broken() -> Any:
        raise RuntimeError("statsd down")

    monkeypatch.setattr(metrics, "_stats", broken)
    metrics.feedback_figures(FeedbackRates(1, 0, 0), {"quarantine": 1})
    metrics.feedback("ses", {"failed": 1})
