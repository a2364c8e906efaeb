"""A delivery worker killed with SIGKILL mid-chunk loses no event and writes no second final log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from messagecenter import processing, store
from messagecenter.config import ProcessingSettings
from messagecenter.delivery import transport_for
from messagecenter.intake import event_from_dict
from messagecenter.templates import parse_templates, publish_templates
from tests.conftest import REPO
from tests.sinks import Recorder, SmtpSink

EVENTS = 300
SETTINGS = ProcessingSettings(
    deliver_chunk=100, lease_seconds=6, retry_backoff_seconds=0, min_shard_size=10_000
)

WORKER = """
import json, sys
from messagecenter import processing
from messagecenter.config import ProcessingSettings
from messagecenter.delivery import transport_for
import psycopg
dsn, shard, settings = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
with psycopg.connect(dsn) as conn:
    processing.deliver_shard(conn, processing.Shard.from_xcom(shard), ProcessingSettings(**settings),
                             transport_for=transport_for)
"""


class SlowRecorder(Recorder):
    """Accepts every mail, slowly enough that a chunk takes seconds."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


def test_killed_delivery_worker_loses_nothing_and_duplicates_no_log(
    db_dsn: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        for n in range(EVENTS)
    ]
    store.insert_events(conn, "batch", events, instance_id=1)
    (shard,) = processing.split_queue(conn, "batch", SETTINGS)
    assert processing.link_templates(conn, shard).linked == EVENTS

    with SmtpSink(SlowRecorder()) as sink:
        env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "AIRFLOW_CONN_MC_SMTP": sink.connection()}
        settings = dict(vars(SETTINGS))
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, db_dsn, json.dumps(shard.to_xcom()), json.dumps(settings)], env=env
        )
        deadline = time.monotonic() + 60
        while len(sink.recorder.received) < 150 and time.monotonic() < deadline:  # mid second chunk
            time.sleep(0.005)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        sent_before_kill = len(sink.recorder.received)
        logs_at_kill = conn.execute("SELECT count(*) FROM mc.delivery_log").fetchone()[0]
        assert 100 <= sent_before_kill < EVENTS
        assert logs_at_kill < sent_before_kill  # the interrupted chunk's results were never written

        # The killed chunk's events stay leased: a new worker delivers the rest at once, and those
        # only when the lease has ended.
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection())
        leased, wait = conn.execute(
            "SELECT count(*), extract(epoch FROM max(next_try) - now()) FROM mc.batch_event"
            " WHERE status = 1 AND next_try > now()"
            " AND NOT EXISTS (SELECT 1 FROM mc.delivery_log WHERE event_id = mc.batch_event.id)"
        ).fetchone()
        assert leased > 0
        first = processing.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
        assert first.sent == EVENTS - logs_at_kill - leased
        time.sleep(float(wait) + 0.2)
        assert processing.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for).sent == leased
        processing.update_events_status(conn)

    statuses = dict(conn.execute("SELECT status, count(*) FROM mc.batch_event GROUP BY status").fetchall())
    assert statuses == {2: EVENTS}
    logs, distinct, sent_logs = conn.execute(
        "SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE status = 2) FROM mc.delivery_log"
    ).fetchone()
    assert logs == distinct == sent_logs == EVENTS
    # At least once: every event's mail arrived; only the killed chunk's mails may have gone twice.
    received = sink.recorder.event_ids()
    assert set(received) == {e[0] for e in conn.execute("SELECT id FROM mc.batch_event")}
    assert len(received) - EVENTS <= sent_before_kill - logs_at_kill
