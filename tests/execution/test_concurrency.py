"""Concurrent delivery against providers with latency: many messages in flight, never more
connections than ``max_connections``, a rate limit shared by every worker, Retry-After, and the
real-time drain's statuses readable at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake import store
from messagecenter.templates.rendering import Renderer
from tests.support.builders import REPO, publish, push
from tests.support.sinks import Recorder, Reply, SmtpSink

SETTINGS = ProcessingSettings(retry_backoff_seconds=0, deliver_chunk=500, min_shard_size=10_000)
MAIL = {"type": "ORDER_CONFIRMATION", "ctx": {"orderId": "A-1", "firstName": "Ann"}}


class SlowCountingRecorder(Recorder):
    """Answers each mail after ``delay`` and records how many were in flight at most."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.active = 0
        self.most_active = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.active -= 1


def linked_shard(conn: psycopg.Connection, queue: str, events: list[dict[str, Any]]) -> execution.Shard:
    publish(conn)
    push(conn, queue, *events)
    (shard,) = execution.split_queue(conn, queue, SETTINGS)
    execution.link_templates(conn, shard)
    return shard


def test_email_goes_out_many_at_a_time_never_over_max_connections(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = SlowCountingRecorder(delay=0.2)
    shard = linked_shard(conn, "batch", [{**MAIL, "email": f"u{n}@example.com"} for n in range(40)])
    with SmtpSink(recorder) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection(max_connections=5))
        start = time.monotonic()
        counts = execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
        elapsed = time.monotonic() - start
    assert counts.sent == 40
    assert recorder.most_active == 5  # concurrent, and never more than the connection allows
    assert len(set(recorder.peers)) == 5  # five connections, each reused
    assert elapsed < 40 * 0.2 / 2  # one at a time would take 8 s; five at a time about 1.6 s


def test_sms_goes_out_many_at_a_time_never_over_max_connections(
    conn: psycopg.Connection, http_sinks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sms = http_sinks["sms"]
    sms.replies.extend(Reply(delay=0.2) for _ in range(40))
    extra = {"endpoint": "/sms", "max_connections": 4}
    conn_json = {"conn_type": "http", "host": "127.0.0.1", "port": sms.port, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", json.dumps(conn_json))
    shard = linked_shard(
        conn,
        "batch",
        [
            {"type": "OTP", "channel": "sms", "mobile_phone": "+33600000000", "ctx": {"code": n}}
            for n in range(40)
        ],
    )
    start = time.monotonic()
    counts = execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    elapsed = time.monotonic() - start
    assert counts.sent == 40
    assert len({r.client for r in sms.requests}) == 4  # four kept-alive connections
    assert elapsed < 40 * 0.2 / 2


def test_429_with_retry_after_schedules_the_retry_no_earlier(
    conn: psycopg.Connection, http_sinks: dict[str, Any]
) -> None:
    sms = http_sinks["sms"]
    sms.replies.append(Reply(status=429, body='{"error": "slow down"}', headers=(("Retry-After", "120"),)))
    shard = linked_shard(
        conn, "batch", [{"type": "OTP", "channel": "sms", "mobile_phone": "+33600000000", "ctx": {"code": 1}}]
    )
    counts = execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    assert counts.retried == 1
    wait = conn.execute("SELECT extract(epoch FROM next_try - now()) FROM mc.batch_event").fetchone()[0]
    assert 115 <= wait <= 125  # the provider's 120 s, although the backoff here is 0


def test_realtime_drain_makes_sent_readable_at_once(conn: psycopg.Connection, smtp_sink: Any) -> None:
    publish(conn)
    [event_id] = push(conn, "rt", {**MAIL, "email": "ann@example.com"})
    counts = execution.process_once(conn, "rt", SETTINGS, transport_for=transport_for, renderer=Renderer())
    assert counts.sent == 1
    event = store.get_event(conn, "rt", event_id)  # what GET /api/v1/events/rt/{id} answers
    assert event is not None
    assert (event["status"], event["status_name"]) == (2, "Sent")
    assert execution.update_events_status(conn).copied == 0  # nothing left for the minute job


SENDER = """
import sys
from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
import json, psycopg
dsn, shard = sys.argv[1], json.loads(sys.argv[2])
settings = ProcessingSettings(retry_backoff_seconds=0, deliver_chunk=500, min_shard_size=10_000)
with psycopg.connect(dsn) as conn:
    shard = execution.Shard.from_xcom(shard)
    counts = execution.deliver_shard(conn, shard, settings, transport_for=transport_for)
print(counts.sent)
"""


def test_max_rate_holds_across_two_worker_processes(
    conn: psycopg.Connection, db_dsn: str, http_sinks: dict[str, Any]
) -> None:
    """Two workers deliver two shards to one provider limited to 25 messages/s: together they stay
    within 10% of it (each alone would go several times faster)."""
    rate, per_worker = 25.0, 60
    sms = http_sinks["sms"]
    extra = {"endpoint": "/sms", "max_rate": rate, "max_connections": 8}
    conn_json = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": sms.port, "extra": extra})
    publish(conn)
    doc = {"templates": [{"event_type": "OTP2", "channel": "sms", "text": "Code {{ ctx.code }}"}]}
    publish(conn, doc)
    for event_type in ("OTP", "OTP2"):
        push(
            conn,
            "batch",
            *(
                {"type": event_type, "channel": "sms", "mobile_phone": "+33600000000", "ctx": {"code": n}}
                for n in range(per_worker)
            ),
        )
    shards = execution.split_queue(conn, "batch", replace(SETTINGS, parallelism=1))
    assert len(shards) == 2
    for shard in shards:
        execution.link_templates(conn, shard)
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "AIRFLOW_CONN_MC_SMS": conn_json}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, db_dsn, json.dumps(shard.to_xcom())],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for shard in shards
    ]
    outputs = [w.communicate(timeout=60)[0] for w in workers]
    assert [int(out.strip().splitlines()[-1]) for out in outputs] == [per_worker, per_worker]
    arrivals = sorted(r.at for r in sms.requests)
    assert len(arrivals) == 2 * per_worker
    measured = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(measured - rate) <= 0.1 * rate, f"{measured:.1f} messages/s for a limit of {rate:g}"
