"""A connection that the server refuses twice (421) is replaced, not reused for the rest of the chunk.

Before: after a second 421 in a row the transport kept its dead connection, so every later message
of the chunk failed without reaching the server, each counted as a try (5 events, 2 DATA commands
seen by the server, 5 events with an error). Now the next message gets a fresh connection, and an
event counts a try only when the server refused it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates
from tests.support.sinks import Recorder, SmtpSink

SETTINGS = ProcessingSettings(retry_backoff_seconds=0, deliver_chunk=50, parallelism=1, max_tries=5)
TEMPLATE = {"templates": [{"event_type": "RESET", "channel": "email", "subject": "Reset", "text": "Hi"}]}


def run_once(conn: psycopg.Connection[Any]) -> None:
    shards = execution.split_queue(conn, "batch", SETTINGS)
    for shard in shards:
        execution.link_templates(conn, shard)
    for shard in shards:
        execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)


@pytest.mark.parametrize("connections", [1, 3])
def test_a_connection_refused_twice_is_replaced(conn, monkeypatch, connections: int) -> None:
    recorder = Recorder(data_replies=deque(["421 4.7.0 busy, closing", "421 4.7.0 still busy, closing"]))
    with SmtpSink(recorder) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection(max_connections=connections))
        publish_templates(conn, parse_templates(TEMPLATE))
        events = [event_from_dict({"type": "RESET", "email": f"u{n}@example.com"}) for n in range(5)]
        ids = store.insert_events(conn, "batch", events, instance_id=1).ids
        run_once(conn)
    errors = dict(conn.execute("SELECT id, errors FROM mc.batch_event").fetchall())
    # Every message reached the server: the two refused DATA commands, then each message once (the
    # refused one again on its retry, as soon as it was due).
    assert set(recorder.event_ids()) == set(ids)
    assert len(recorder.peers) == 2 + len(ids)
    # Only a message refused twice counts a try (on one connection, the first message; with several,
    # the two 421s may fall on two messages, each then sent on its new connection); none was lost
    # to a dead connection.
    expected = [0, 0, 0, 0, 1] if connections == 1 else None
    assert sorted(errors.values()) == expected or (connections > 1 and sum(errors.values()) <= 1)


def test_a_message_that_never_reached_the_server_is_not_a_try(conn, monkeypatch) -> None:
    from tests.support.sinks import free_port

    dead = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": free_port(),
        "extra": {
            "from_email": "shop@example.com",
            "disable_ssl": True,
            "disable_tls": True,
            "timeout": 2,
            "retry_limit": 0,
        },
    }
    import json

    monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", json.dumps(dead))
    publish_templates(conn, parse_templates(TEMPLATE))
    events = [event_from_dict({"type": "RESET", "email": f"u{n}@example.com"}) for n in range(8)]
    store.insert_events(conn, "batch", events, instance_id=1)
    run_once(conn)
    rows = conn.execute("SELECT status, errors FROM mc.batch_event").fetchall()
    assert rows == [(1, 0)] * 8  # all waiting for a retry, none counted as a try
