"""Workers stop cleanly: SIGTERM mid-chunk, and a database that goes away mid-chunk.

Airflow sends SIGTERM to tasks on every deploy and worker restart (its task runner then calls the
operator's ``on_kill``). A real-time drain caught mid-chunk must exit within a few seconds, having
logged what it sent and released what it had not: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
from messagecenter.execution.deliver import DatabaseLost
from messagecenter.templates.rendering import Renderer
from tests.support.builders import REPO, airflow_uri, publish, push
from tests.support.sinks import SlowRecorder, SmtpSink

EVENTS = 200
TEMPLATES = {"templates": [{"event_type": "CODE", "channel": "email", "subject": "s", "text": "{{ ctx.n }}"}]}

# What Airflow's task runner does for a task: the operator runs; SIGTERM calls its on_kill().
DRAIN = """
import json, signal
from messagecenter.airflow.operators import DrainRealtimeOperator
op = DrainRealtimeOperator(task_id="drain_rt_queue", lifetime_seconds=120)
signal.signal(signal.SIGTERM, lambda signum, frame: op.on_kill())
print(json.dumps(op.execute(context={})), flush=True)
"""


def test_sigterm_stops_a_drain_mid_chunk_promptly_with_nothing_lost_or_sent_twice(
    conn: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(conn, TEMPLATES)
    recorder = SlowRecorder()
    recorder.delay = 0.02  # 200 mails: about 4 s for the chunk, if nothing stopped it
    with SmtpSink(recorder) as sink:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "plugins"),
            "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
            "AIRFLOW_CONN_MC_SMTP": sink.connection(),
            "MC_DELIVER_CHUNK": str(EVENTS),
        }
        drain = subprocess.Popen([sys.executable, "-c", DRAIN], env=env, stdout=subprocess.PIPE, text=True)
        try:
            push(
                conn,
                "rt",
                *({"type": "CODE", "email": f"u{n}@example.com", "ctx": {"n": n}} for n in range(EVENTS)),
            )
            deadline = time.monotonic() + 60
            while len(recorder.received) < 30 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(recorder.received) >= 30, "the drain never started sending"
            drain.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            out, _ = drain.communicate(timeout=30)
            took = time.monotonic() - stopped_at
        finally:
            if drain.poll() is None:
                drain.kill()
        assert drain.returncode == 0, out
        assert took < 3, f"the drain took {took:.1f} s to stop"
        sent_by_drain = len(recorder.received)
        assert sent_by_drain < EVENTS  # it did stop mid-chunk
        logs = conn.execute("SELECT count(*) FROM mc.delivery_log").fetchone()[0]
        assert logs == sent_by_drain  # what went out is logged, nothing else

        # The rest was released at once: no lease to wait for, a new worker takes it now.
        recorder.delay = 0
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection())
        counts = execution.process_once(
            conn,
            "rt",
            ProcessingSettings(deliver_chunk=EVENTS),
            transport_for=transport_for,
            renderer=Renderer(),
        )
        assert counts.sent == EVENTS - sent_by_drain
    mailed = Counter(recorder.event_ids())
    assert len(mailed) == EVENTS
    assert set(mailed.values()) == {1}  # nothing sent twice


def test_a_worker_that_loses_its_database_stops_sending_at_once(
    conn: psycopg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(conn, TEMPLATES)
    push(
        conn, "batch", *({"type": "CODE", "email": f"u{n}@example.com", "ctx": {"n": n}} for n in range(100))
    )
    settings = ProcessingSettings(deliver_chunk=100, min_shard_size=10_000)
    (shard,) = execution.split_queue(conn, "batch", settings)
    execution.link_templates(conn, shard)
    recorder = SlowRecorder()
    recorder.delay = 0.02
    outcome: dict[str, Any] = {}
    with SmtpSink(recorder) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection())
        worker_conn = psycopg.connect(db_dsn, application_name="mc-test-lost")

        def deliver() -> None:
            try:
                execution.deliver_shard(worker_conn, shard, settings, transport_for=transport_for)
            except Exception as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=deliver)
        worker.start()
        deadline = time.monotonic() + 30
        while len(recorder.received) < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mc-test-lost'"
        )
        lost_at = len(recorder.received)
        worker.join(timeout=30)
        worker_conn.close()
    assert isinstance(outcome.get("error"), DatabaseLost)
    # The server ends the session a few milliseconds after it is asked: the messages in flight (at
    # most max_connections, 10) and at most one more round, instead of the 80 left in the chunk.
    assert len(recorder.received) <= lost_at + 2 * 10
    # Only the logs committed as the messages went out (on their own connection), each for a mail sent.
    logged = {row[0] for row in conn.execute("SELECT event_id FROM mc.delivery_log")}
    assert logged <= set(recorder.event_ids())
