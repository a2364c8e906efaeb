"""Push through the whole delivery: templates with push options, FCM and APNs answers turned into
statuses, dead tokens quarantined in the chunk's transaction, retries after ``Retry-After``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from devstack.push import Answer, FakeApns, FakeFcm, OAuthServer

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import FeedbackSettings, ProcessingSettings
from messagecenter.core.types import Channel, Status
from messagecenter.feedback import apply
from messagecenter.feedback.quarantine import AddressStatus, get_state, set_status
from messagecenter.feedback.rules import qualifier
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates

SETTINGS = ProcessingSettings(retry_backoff_seconds=0, max_tries=3, deliver_chunk=50, min_shard_size=10)
TEMPLATES = {
    "templates": [
        {
            "event_type": "ORDER",
            "channel": channel,
            "subject": "Order {{ ctx.order }}",
            "text": "It ships {{ ctx.when }}",
            "data": {"order": "{{ ctx.order }}", "kind": "shipping"},
            "badge": 1,
            "sound": "default",
            "collapse_id": "orders",
            **({"thread_id": "orders"} if channel == "ios" else {}),
        }
        for channel in ("android", "ios")
    ]
}


@pytest.fixture
def fcm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFcm]:
    with OAuthServer() as oauth, FakeFcm(oauth) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MC_PUSH_ANDROID", json.dumps(server.connection()))
        yield server


@pytest.fixture
def apns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApns]:
    with FakeApns(tmp_path) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MC_PUSH_IOS", json.dumps(server.connection()))
        yield server


def deliver(conn: psycopg.Connection[Any], channel: str, *tokens: str) -> list[int]:
    """Publish the templates, push one batch event per token, run the batch workflow once."""
    publish_templates(conn, parse_templates(TEMPLATES))
    events = [
        event_from_dict(
            {"type": "ORDER", "channel": channel, "push_token": t, "ctx": {"order": n, "when": "now"}}
        )
        for n, t in enumerate(tokens, 1)
    ]
    ids = store.insert_events(conn, "batch", events, instance_id=1).ids
    run(conn)
    return ids


def run(conn: psycopg.Connection[Any]) -> None:
    for shard in execution.split_queue(conn, "batch", SETTINGS):
        execution.link_templates(conn, shard)
        execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    execution.update_events_status(conn)


def outcome(conn: psycopg.Connection[Any], event_id: int) -> tuple[int, str | None, str | None, str | None]:
    """The event's status, and its log's error, provider answer and message id."""
    row = conn.execute(
        "SELECT e.status, l.error, l.provider_answer, l.message_id FROM mc.batch_event e "
        "LEFT JOIN mc.delivery_log l ON l.event_id = e.id WHERE e.id = %s",
        (event_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def test_android_events_through_fcm(conn, fcm) -> None:
    fcm.script.always("dead", Answer(0, "UNREGISTERED"))
    fcm.script.always("malformed", Answer(0, "INVALID_ARGUMENT"))
    ok1, dead, malformed, ok2 = deliver(conn, "android", "tok-1", "dead", "malformed", "tok-2")

    # The refused events fail alone; their neighbours are sent, with FCM's message name kept.
    assert outcome(conn, ok1)[0] == outcome(conn, ok2)[0] == Status.SENT
    assert outcome(conn, ok1)[3].startswith("projects/mc-test/messages/")
    status, error, answer, _ = outcome(conn, dead)
    assert status == Status.FAILED
    assert "UNREGISTERED" in (error or "")
    assert "UNREGISTERED" in (answer or "")
    status, error, answer, _ = outcome(conn, malformed)
    assert status == Status.FAILED
    assert "INVALID_ARGUMENT" in (answer or "")

    # The rendered template and its options, in FCM's format.
    first = next(r for r in fcm.received if r.token == "tok-1")
    assert first.message == {
        "token": "tok-1",
        "notification": {"title": "Order 1", "body": "It ships now"},
        "data": {"order": "1", "kind": "shipping"},
        "android": {"collapse_key": "orders", "notification": {"sound": "default", "notification_count": 1}},
    }

    # The dead token is in quarantine at once (the chunk's transaction), the malformed one is not.
    state = get_state(conn, Channel.ANDROID, "dead")
    assert state.status == AddressStatus.QUARANTINE
    assert state.failure_reason == "User unknown"
    assert state.source == "fcm"
    assert get_state(conn, Channel.ANDROID, "malformed").status != AddressStatus.QUARANTINE

    # The next event to it is not sent: Ignored, address in quarantine.
    requests = fcm.requests
    (again,) = deliver(conn, "android", "dead")
    assert outcome(conn, again)[:2] == (Status.IGNORED, "address in quarantine")
    assert fcm.requests == requests


def test_ios_events_through_apns(conn, apns) -> None:
    # A 410 as APNs sends it: the token found invalid a day before the event was even received.
    gone_since = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)
    apns.script.always("gone", Answer(410, "Unregistered", timestamp=gone_since))
    apns.script.always("bad", Answer(400, "BadDeviceToken"))
    ok, gone, bad = deliver(conn, "ios", "tok-1", "gone", "bad")

    assert outcome(conn, ok)[0] == Status.SENT
    message_id = outcome(conn, ok)[3]
    assert message_id == apns.answered_ids[0]  # the apns-id
    assert [outcome(conn, e)[0] for e in (gone, bad)] == [Status.FAILED] * 2
    assert "Unregistered" in (outcome(conn, gone)[2] or "")
    assert apns.received[0].payload == {
        "aps": {
            "alert": {"title": "Order 1", "body": "It ships now"},
            "badge": 1,
            "sound": "default",
            "thread-id": "orders",
        },
        "order": "1",
        "kind": "shipping",
    }
    assert apns.received[0].headers["apns-collapse-id"] == "orders"

    # 410: quarantined at once, though the event came after APNs found the token invalid (an event
    # is not a registration: the app's backend may send a stale token for months).
    assert get_state(conn, Channel.IOS, "gone").status == AddressStatus.QUARANTINE
    assert get_state(conn, Channel.IOS, "gone").source == "apns"
    # BadDeviceToken fails that event alone.
    assert get_state(conn, Channel.IOS, "bad").status != AddressStatus.QUARANTINE


def test_an_unregistered_ios_token_is_sent_again_only_once_released(conn, apns) -> None:
    """Apple: stop sending to a 410's token unless the device registers it again after the 410's
    timestamp. Registrations are the app's backend's: it releases the token from quarantine."""
    day_ago = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)
    apns.script.once("tok-9", Answer(410, "Unregistered", timestamp=day_ago))
    (first,) = deliver(conn, "ios", "tok-9")
    assert outcome(conn, first)[0] == Status.FAILED
    assert get_state(conn, Channel.IOS, "tok-9").status == AddressStatus.QUARANTINE

    # Later events carrying the token, all received after APNs's timestamp, are not sent.
    requests = apns.requests
    later = deliver(conn, "ios", "tok-9", "tok-9")
    assert [outcome(conn, e)[:2] for e in later] == [(Status.IGNORED, "address in quarantine")] * 2
    assert apns.requests == requests
    # updateQuarantine's qualification of the refusal agrees (Hard, User unknown): still quarantined.
    assert apply.qualify_send_failures(conn, qualify=qualifier(conn), rules=FeedbackSettings()) >= 1
    assert get_state(conn, Channel.IOS, "tok-9").status == AddressStatus.QUARANTINE

    # The device registered the token again: the backend releases it, and it is sent to again.
    set_status(conn, Channel.IOS, "tok-9", AddressStatus.VALID, source="app backend")
    (again,) = deliver(conn, "ios", "tok-9")
    assert outcome(conn, again)[0] == Status.SENT

    # APNs finds it invalid once more (a newer timestamp): quarantined again.
    now = int(datetime.now(UTC).timestamp() * 1000)
    apns.script.once("tok-9", Answer(410, "Unregistered", timestamp=now))
    (last,) = deliver(conn, "ios", "tok-9")
    assert outcome(conn, last)[0] == Status.FAILED
    assert get_state(conn, Channel.IOS, "tok-9").status == AddressStatus.QUARANTINE


def test_busy_fcm_is_retried_after_its_retry_after(conn, fcm) -> None:
    fcm.script.once("tok-1", Answer(0, "QUOTA_EXCEEDED", retry_after="120"))
    fcm.script.once("tok-2", Answer(0, "UNAVAILABLE", retry_after="0"))
    before = time.time()
    busy, unavailable = deliver(conn, "android", "tok-1", "tok-2")
    row = conn.execute(
        "SELECT status, errors, next_try FROM mc.batch_event WHERE id = %s", (busy,)
    ).fetchone()
    assert row is not None
    assert row[0] == Status.PENDING_DELIVERY
    assert row[1] == 1
    assert row[2].timestamp() >= before + 119  # not before FCM's Retry-After

    run(conn)  # the one without a wait goes now; the other is not due yet
    assert outcome(conn, unavailable)[0] == Status.SENT
    assert outcome(conn, busy)[0] == Status.PENDING_DELIVERY
    assert [r.token for r in fcm.received] == ["tok-2"]
