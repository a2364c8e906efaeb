"""The real-time drain's log is worth reading: passes that did work log their counts, the idle
wake-ups (about one a second) are summarised once per interval instead of one line each."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict


def test_idle_wake_ups_are_summarised_not_logged_one_by_one(
    conn: psycopg.Connection, db_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # No template published: the event is claimed, then not taken into account (a pass with work).
    store.insert_events(conn, "rt", [event_from_dict({"type": "NO_TEMPLATE"})], instance_id=1)

    @contextmanager
    def connect() -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(db_dsn) as connection:
            yield connection

    with caplog.at_level(logging.INFO, logger="messagecenter"):
        total = execution.drain_realtime(
            connect,
            ProcessingSettings(),
            transport_for=transport_for,
            lifetime_seconds=3.5,
            idle_wait_seconds=0.05,  # some 60 wake-ups
            summary_seconds=1.0,
        )
    assert (total.claimed, total.not_taken) == (1, 1)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("messagecenter.execution")]
    assert not [line for line in lines if "claimed 0 events" in line]
    assert len([line for line in lines if line.startswith("Split rt: claimed 1 events")]) == 1
    assert len([line for line in lines if line.startswith("rt drain pass: claimed 1,")]) == 1
    summaries = [line for line in lines if line.startswith("rt drain")]
    busy, *idle = [line for line in summaries if "in the last" in line]
    assert busy.startswith("rt drain: "), busy
    assert "claimed 1, delivered 0" in busy, busy
    assert 1 <= len(idle) <= 3, lines
    for line in idle:
        passes = int(line.removeprefix("rt drain idle: ").split(" ")[0])
        assert passes > 5, line  # many wake-ups, one line
        assert ", 0 events in the last " in line
    assert len(lines) < 12, lines  # the pass, the summaries, the final total: nothing per wake-up
