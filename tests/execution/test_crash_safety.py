"""A delivery worker killed (SIGKILL) or hung (SIGSTOP) mid-chunk loses no event and writes no
second final log: the chunk's row locks are its lease, released when the worker's session ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates
from tests.support.builders import REPO
from tests.support.sinks import SlowRecorder, SmtpSink

EVENTS = 300
CHUNK = 50
SETTINGS = ProcessingSettings(
    deliver_chunk=CHUNK, lease_seconds=30, retry_backoff_seconds=0, min_shard_size=10_000
)

WORKER = """
import json, sys
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings
from messagecenter.airflow.transports import transport_for
import psycopg
dsn, shard, settings = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
with psycopg.connect(dsn, application_name="mc-test-worker") as conn:
    execution.deliver_shard(conn, execution.Shard.from_xcom(shard), ProcessingSettings(**settings),
                             transport_for=transport_for)
"""


def linked_shard(conn: psycopg.Connection, settings: ProcessingSettings, count: int) -> execution.Shard:
    """``count`` e-mail events split into one shard and linked to their template."""
    publish_templates(
        conn,
        parse_templates(
            {
                "templates": [
                    {"event_type": "OTP_MAIL", "channel": "email", "subject": "s", "text": "{{ ctx.n }}"}
                ]
            }
        ),
    )
    events = [
        event_from_dict({"type": "OTP_MAIL", "email": f"u{n}@example.com", "ctx": {"n": n}})
        for n in range(count)
    ]
    store.insert_events(conn, "batch", events, instance_id=1)
    (shard,) = execution.split_queue(conn, "batch", settings)
    assert execution.link_templates(conn, shard).linked == count
    return shard


@contextmanager
def worker_mid_chunk(
    conn: psycopg.Connection, db_dsn: str, settings: ProcessingSettings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SmtpSink, execution.Shard, subprocess.Popen[bytes]]]:
    """A linked shard of ``EVENTS`` events and a real delivery process caught half-way through its
    second chunk (the test then kills or freezes it)."""
    shard = linked_shard(conn, settings, EVENTS)
    recorder = SlowRecorder()
    with SmtpSink(recorder) as sink:
        env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "AIRFLOW_CONN_MC_SMTP": sink.connection()}
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection())
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, db_dsn, json.dumps(shard.to_xcom()), json.dumps(vars(settings))],
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while len(recorder.received) < CHUNK * 1.5 and time.monotonic() < deadline:
                time.sleep(0.002)
            yield sink, shard, worker
        finally:
            worker.kill()
            worker.wait()


def worker_sessions(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mc-test-worker'"
    ).fetchone()[0]


def assert_every_event_sent_once(conn: psycopg.Connection, sink: SmtpSink, redelivered_at_most: int) -> None:
    execution.update_events_status(conn)
    statuses = dict(conn.execute("SELECT status, count(*) FROM mc.batch_event GROUP BY status").fetchall())
    assert statuses == {2: EVENTS}
    logs, distinct, sent_logs = conn.execute(
        "SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE status = 2) FROM mc.delivery_log"
    ).fetchone()
    assert logs == distinct == sent_logs == EVENTS
    # At least once: every event's mail arrived; only the interrupted chunk's mails may have gone twice.
    received = sink.recorder.event_ids()
    assert set(received) == {e[0] for e in conn.execute("SELECT id FROM mc.batch_event")}
    assert len(received) - EVENTS <= redelivered_at_most


def test_killed_delivery_worker_loses_nothing_and_duplicates_no_log(
    db_dsn: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    with worker_mid_chunk(conn, db_dsn, SETTINGS, monkeypatch) as (sink, shard, worker):
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        sent_before_kill = len(sink.recorder.received)
        logs_at_kill = conn.execute("SELECT count(*) FROM mc.delivery_log").fetchone()[0]
        # The first chunk committed; of the interrupted one, only what its flushes committed.
        assert CHUNK <= logs_at_kill < 2 * CHUNK
        assert sent_before_kill > logs_at_kill
        sink.recorder.delay = 0  # type: ignore[attr-defined]

        # The server ends the dead worker's session at once, and its row locks with it: a new
        # worker delivers everything left straight away, long before the lease could run out.
        deadline = time.monotonic() + 5
        while worker_sessions(conn) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker_sessions(conn) == 0
        start = time.monotonic()
        assert (
            execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for).sent
            == EVENTS - logs_at_kill
        )
        assert time.monotonic() - start < SETTINGS.lease_seconds
        assert_every_event_sent_once(conn, sink, redelivered_at_most=sent_before_kill - logs_at_kill)


def test_hung_delivery_worker_holds_its_chunk_for_the_lease_only(
    db_dsn: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen worker (a zombie task) keeps its chunk until the server ends its idle session after
    ``lease_seconds``; when it wakes up, its late results are refused."""
    settings = replace(SETTINGS, lease_seconds=5)
    with worker_mid_chunk(conn, db_dsn, settings, monkeypatch) as (sink, shard, worker):
        worker.send_signal(signal.SIGSTOP)
        logs_at_stop = conn.execute("SELECT count(*) FROM mc.delivery_log").fetchone()[0]
        assert CHUNK <= logs_at_stop < 2 * CHUNK  # the first chunk, and the frozen one's flushed logs
        sink.recorder.delay = 0  # type: ignore[attr-defined]

        # Another worker skips the frozen chunk (locked) and delivers the rest at once.
        first = execution.deliver_shard(conn, shard, settings, transport_for=transport_for)
        assert first.sent == EVENTS - 2 * CHUNK
        assert worker_sessions(conn) == 1  # the frozen worker still holds its chunk
        assert execution.deliver_shard(conn, shard, settings, transport_for=transport_for).sent == 0

        # The lease ends: the server terminates the idle frozen session and the chunk is free.
        deadline = time.monotonic() + 10
        while worker_sessions(conn) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker_sessions(conn) == 0
        left = 2 * CHUNK - logs_at_stop  # the frozen chunk's events whose logs were not flushed
        assert execution.deliver_shard(conn, shard, settings, transport_for=transport_for).sent == left

        # The zombie wakes up, finishes sending its chunk, and fails to write its results.
        worker.send_signal(signal.SIGCONT)
        assert worker.wait(timeout=30) != 0
        assert_every_event_sent_once(conn, sink, redelivered_at_most=CHUNK)


def test_slow_delivery_worker_keeps_its_chunk_past_the_lease(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk that takes longer than ``lease_seconds`` to send, from a worker that is alive, is
    not cut off: it tells the server it is alive between messages, and commits its logs once."""
    settings = replace(SETTINGS, lease_seconds=1, deliver_chunk=EVENTS)
    shard = linked_shard(conn, settings, 40)
    recorder = SlowRecorder()
    recorder.delay = 0.5  # 40 mails, 10 at a time: about 2 s for one chunk, twice the lease
    with SmtpSink(recorder) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection())
        start = time.monotonic()
        assert execution.deliver_shard(conn, shard, settings, transport_for=transport_for).sent == 40
        assert time.monotonic() - start > 1.5 * settings.lease_seconds
    assert len(recorder.received) == 40
    assert conn.execute("SELECT count(*) FROM mc.delivery_log WHERE status = 2").fetchone()[0] == 40
