"""FCM HTTP v1 and APNs transports against local servers that check what the real ones check.

The FCM fake checks the OAuth2 access token (issued by a fake token endpoint that verifies the
service account's signed assertion), the path and the message against FCM v1's format; the APNs
fake runs HTTP/2 over TLS and checks the provider token's ES256 signature and claims, every
``apns-*`` header and the payload. Both replay the documented error answers.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from devstack.push import Answer, FakeApns, FakeFcm, OAuthServer

from messagecenter.airflow.transports import apns_transport, fcm_transport, transport_for
from messagecenter.delivery import HttpTransport, Outcome, OutgoingMessage
from messagecenter.delivery.apns import ApnsTransport, apns_id, provider_tokens
from messagecenter.delivery.fcm import FcmTransport, access_tokens
from messagecenter.delivery.pool import TransportPool

ANDROID, IOS = 42, 41


def push(event_id: int = 7, channel: int = ANDROID, token: str = "tok-1", **kwargs: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {"subject": "Parcel", "text": "It is on its way", **kwargs}
    return OutgoingMessage(event_id=event_id, channel=channel, address=token, **fields)


def use(monkeypatch: pytest.MonkeyPatch, conn_id: str, connection: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture
def fcm(oauth: OAuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFcm]:
    with FakeFcm(oauth) as server:
        use(monkeypatch, "mc_push_android", server.connection())
        yield server


@pytest.fixture
def apns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApns]:
    with FakeApns(tmp_path) as server:
        use(monkeypatch, "mc_push_ios", server.connection())
        yield server


# --- choosing the transport ----------------------------------------------------------------------


def test_platform_connections_choose_the_connector(monkeypatch, fcm, apns):
    assert isinstance(transport_for(ANDROID), FcmTransport)
    assert isinstance(transport_for(IOS), ApnsTransport)
    assert transport_for(ANDROID).name == "mc_push_android"
    assert transport_for(IOS).name == "mc_push_ios"


def test_without_platform_connections_the_generic_push_provider_is_used(monkeypatch, http_sinks):
    monkeypatch.delenv("AIRFLOW_CONN_MC_PUSH_ANDROID", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MC_PUSH_IOS", raising=False)
    for channel in (ANDROID, IOS):
        transport = transport_for(channel)
        assert isinstance(transport, HttpTransport)
        assert transport.name == "mc_push"


def test_ios_tokens_may_go_through_firebase(monkeypatch, fcm):
    use(monkeypatch, "mc_push_ios", fcm.connection())
    transport = transport_for(IOS)
    assert isinstance(transport, FcmTransport)
    with transport:
        result = transport.send(
            push(channel=IOS, badge=2, sound="chime.aiff", collapse_id="order-42", thread_id="o")
        )
    assert result.outcome is Outcome.SENT, result.error
    (received,) = fcm.received
    assert received.message["apns"] == {
        "headers": {"apns-collapse-id": "order-42"},
        "payload": {"aps": {"badge": 2, "sound": "chime.aiff", "thread-id": "o"}},
    }
    assert "android" not in received.message


def test_provider_limits_come_from_the_connection(monkeypatch, fcm, apns):
    use(monkeypatch, "mc_push_android", fcm.connection(max_connections=5, max_rate=40, deadline=3))
    use(monkeypatch, "mc_push_ios", apns.connection(max_connections=7))
    android, ios = fcm_transport(), apns_transport()
    assert (android.max_connections, android.max_rate, android.deadline) == (5, 40, 3)
    assert (ios.max_connections, ios.max_rate, ios.deadline) == (7, None, 30)


# --- FCM -----------------------------------------------------------------------------------------


def test_fcm_message_follows_the_v1_format(fcm, oauth):
    data = {"order": 42, "deep_link": "app://o/42", "items": ["a"]}
    with transport_for(ANDROID) as transport:
        first = transport.send(push(data=data, badge=3, sound="default", collapse_id="order-42"))
        second = transport.send(push(event_id=8, token="tok-2"))

    assert first.outcome is second.outcome is Outcome.SENT
    assert first.message_id == "projects/mc-test/messages/0:1"  # FCM's name, kept in the log
    assert second.message_id == "projects/mc-test/messages/0:2"
    assert fcm.problems == []
    assert oauth.problems == []
    assert [r.message for r in fcm.received] == [
        {
            "token": "tok-1",
            "notification": {"title": "Parcel", "body": "It is on its way"},
            "data": {"order": "42", "deep_link": "app://o/42", "items": '["a"]'},  # strings only
            "android": {
                "collapse_key": "order-42",
                "notification": {"sound": "default", "notification_count": 3},
            },
        },
        {"token": "tok-2", "notification": {"title": "Parcel", "body": "It is on its way"}},
    ]
    # One access token for both messages, fetched with a signed assertion the endpoint verified.
    assert len(oauth.issued) == 1
    assert {r.access_token for r in fcm.received} == set(oauth.issued)


@pytest.mark.parametrize(
    ("code", "outcome", "dead"),
    [
        ("UNREGISTERED", Outcome.PERMANENT, True),
        ("INVALID_ARGUMENT", Outcome.PERMANENT, False),
        ("SENDER_ID_MISMATCH", Outcome.PERMANENT, False),
        ("QUOTA_EXCEEDED", Outcome.TRANSIENT, False),
        ("UNAVAILABLE", Outcome.TRANSIENT, False),
        ("INTERNAL", Outcome.TRANSIENT, False),
        ("THIRD_PARTY_AUTH_ERROR", Outcome.TRANSIENT, False),
    ],
)
def test_fcm_documented_errors(fcm, oauth, code, outcome, dead):
    fcm.script.always("tok-1", Answer(0, code, retry_after="17"))
    with transport_for(ANDROID) as transport:
        result = transport.send(push())
    assert result.outcome is outcome
    assert result.extra["fcm_error"] == code
    assert bool(result.extra.get("dead_address")) is dead
    if dead:
        assert result.extra["failure_reason"] == 1
        assert result.extra["source"] == "fcm"
    assert result.extra["retry_after"] == 17.0
    assert code in (result.provider_answer or "")  # the log keeps the provider's text
    assert code in (result.error or "")
    assert len(oauth.issued) == 1  # a THIRD_PARTY_AUTH_ERROR (APNs behind FCM) is not our token


def test_fcm_token_expiring_mid_run_loses_nothing(monkeypatch, tmp_path):
    # The endpoint says an hour, FCM stops taking each token after 0.3 s (revoked, skewed clock).
    with OAuthServer(server_lifetime=0.3) as oauth, FakeFcm(oauth) as fcm:
        use(monkeypatch, "mc_push_android", fcm.connection())
        with transport_for(ANDROID) as transport:
            results = [transport.send(push(event_id=1, token="tok-1"))]
            time.sleep(0.4)
            results += [transport.send(push(event_id=n, token=f"tok-{n}")) for n in (2, 3)]
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.token for r in fcm.received] == ["tok-1", "tok-2", "tok-3"]
    assert len(fcm.refused_tokens) == 1  # refused once, renewed, sent again
    assert len(oauth.issued) == 2


def test_fcm_token_renewed_before_it_expires(monkeypatch):
    with OAuthServer(lifetime=2) as oauth, FakeFcm(oauth) as fcm:
        use(monkeypatch, "mc_push_android", fcm.connection())
        with transport_for(ANDROID) as transport:
            first = transport.send(push(event_id=1))
            second = transport.send(push(event_id=2))
            time.sleep(1.6)  # renewed a quarter of its lifetime before it ends
            third = transport.send(push(event_id=3))
    assert first.outcome is second.outcome is third.outcome is Outcome.SENT
    assert fcm.refused_tokens == []
    assert len(oauth.issued) == 2
    assert fcm.received[0].access_token == fcm.received[1].access_token != fcm.received[2].access_token


def test_fcm_tokens_are_shared_by_the_pool(fcm, oauth):
    make = transport_for
    with TransportPool(make(ANDROID), lambda: make(ANDROID)) as pool, ThreadPoolExecutor(8) as threads:
        results = list(threads.map(pool.send, [push(event_id=n, token=f"tok-{n}") for n in range(40)]))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(fcm.received) == 40
    assert len(oauth.issued) == 1
    assert access_tokens(fcm_transport().read_account()).fetched == 1


def test_fcm_answer_that_is_not_fcm_is_retried(monkeypatch, fcm):
    use(monkeypatch, "mc_push_android", fcm.connection(project_id="another-project"))  # HTML 404
    with transport_for(ANDROID) as transport:
        result = transport.send(push())
    assert result.outcome is Outcome.TRANSIENT
    assert "not an FCM answer" in (result.error or "")
    assert "dead_address" not in result.extra


def test_fcm_unusable_key_is_retried_with_the_reason(monkeypatch, fcm, oauth):
    broken = {
        **oauth.account,
        "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    }
    use(monkeypatch, "mc_push_android", {**fcm.connection(), "password": json.dumps(broken)})
    with transport_for(ANDROID) as transport:
        result = transport.send(push())
    assert result.outcome is Outcome.TRANSIENT
    assert "mc_push_android" in (result.error or "")
    assert fcm.requests == 0


# --- APNs ----------------------------------------------------------------------------------------


def test_apns_request_follows_apples_format(apns):
    data = {"order": 42, "link": "app://o/42"}
    message = push(
        9, IOS, "a1b2c3", data=data, badge=3, sound="default", collapse_id="order-42", thread_id="o-42"
    )
    before = int(time.time())
    with transport_for(IOS) as transport:
        result = transport.send(message)

    assert result.outcome is Outcome.SENT, result.error
    assert apns.problems == []
    assert result.message_id == apns_id(9) == str(uuid.UUID(int=9))
    (received,) = apns.received
    assert received.token == "a1b2c3"
    assert received.payload == {
        "aps": {
            "alert": {"title": "Parcel", "body": "It is on its way"},
            "badge": 3,
            "sound": "default",
            "thread-id": "o-42",
        },
        "order": 42,
        "link": "app://o/42",
    }
    headers = received.headers
    assert headers[":method"] == "POST"
    assert headers[":scheme"] == "https"
    assert headers["apns-topic"] == "com.example.app"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "order-42"
    assert headers["apns-id"] == apns_id(9)
    assert before + 86_400 <= int(headers["apns-expiration"]) <= int(time.time()) + 86_400
    # The fake verified the ES256 signature with the key's public half, kid, iss and iat.
    assert len(apns.jwts) == 1


def test_apns_data_only_message_is_a_background_push(apns):
    with transport_for(IOS) as transport:
        result = transport.send(push(channel=IOS, subject=None, text=None, data={"sync": True}))
    assert result.outcome is Outcome.SENT, result.error
    (received,) = apns.received
    assert received.payload == {"aps": {"content-available": 1}, "sync": True}
    assert received.headers["apns-push-type"] == "background"
    assert received.headers["apns-priority"] == "5"


def test_apns_refuses_locally_what_apple_would(apns):
    with transport_for(IOS) as transport:
        aps_in_data = transport.send(push(channel=IOS, data={"aps": {}}))
        too_big = transport.send(push(channel=IOS, text="x" * 5000))
    assert aps_in_data.outcome is too_big.outcome is Outcome.PERMANENT
    assert "aps" in (aps_in_data.error or "")
    assert "4096" in (too_big.error or "")
    assert apns.requests == 0


def test_apns_provider_token_is_reused_not_signed_per_request(apns):
    make = transport_for
    with TransportPool(make(IOS), lambda: make(IOS)) as pool, ThreadPoolExecutor(8) as threads:
        results = list(threads.map(pool.send, [push(n, IOS, f"tok-{n}") for n in range(40)]))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(apns.received) == 40
    assert apns.connections == 8
    assert len(apns.jwts) == 1
    assert provider_tokens(apns_transport().read_account()).signed == 1


def test_apns_provider_token_is_renewed_when_old(apns):
    tokens = provider_tokens(apns_transport().read_account())
    tokens.renew_after = 1.0  # fifty minutes, shortened
    with transport_for(IOS) as transport:
        first = transport.send(push(1, IOS))
        second = transport.send(push(2, IOS))
        time.sleep(1.1)
        third = transport.send(push(3, IOS))
    assert first.outcome is second.outcome is third.outcome is Outcome.SENT
    jwts = [r.jwt for r in apns.received]
    assert jwts[0] == jwts[1] != jwts[2]
    assert tokens.signed == 2


def test_apns_expired_provider_token_is_renewed_and_the_message_sent_again(apns):
    with transport_for(IOS) as transport:
        first = transport.send(push(1, IOS))
        apns.token_max_age = 1.0  # an hour, shortened: the first token is too old by now
        time.sleep(2.1)  # iat has a one-second resolution
        second = transport.send(push(2, IOS))
    assert first.outcome is second.outcome is Outcome.SENT
    assert len(apns.jwts) == 2
    assert [r.token for r in apns.received] == ["tok-1", "tok-1"]


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        (400, "BadDeviceToken", Outcome.PERMANENT),
        (400, "DeviceTokenNotForTopic", Outcome.PERMANENT),
        (413, "PayloadTooLarge", Outcome.PERMANENT),
        (429, "TooManyRequests", Outcome.TRANSIENT),
        (500, "InternalServerError", Outcome.TRANSIENT),
        (503, "ServiceUnavailable", Outcome.TRANSIENT),
        (403, "InvalidProviderToken", Outcome.TRANSIENT),  # our key: every event would get it
    ],
)
def test_apns_documented_errors(apns, status, reason, outcome):
    apns.script.always("tok-1", Answer(status, reason, retry_after="9"))
    with transport_for(IOS) as transport:
        result = transport.send(push(channel=IOS))
    assert result.outcome is outcome
    assert result.extra["apns_reason"] == reason
    assert result.extra["http_status"] == status
    assert result.extra["retry_after"] == 9.0
    assert "dead_address" not in result.extra
    assert reason in (result.provider_answer or "")


def test_apns_unregistered_token_is_dead_whatever_its_timestamp(apns):
    # APNs's timestamp: when it last confirmed the token invalid, in milliseconds since the epoch,
    # always in the past, and most often well before the event (the app was removed days ago).
    invalid_since = datetime(2026, 12, 1, 9, 30, 15, 250_000, tzinfo=UTC)
    apns.script.always("tok-1", Answer(410, "Unregistered", timestamp=int(invalid_since.timestamp() * 1000)))
    apns.script.always("tok-2", Answer(410, "Unregistered"))  # no timestamp: the same
    with transport_for(IOS) as transport:
        dated = transport.send(push(1, IOS, "tok-1"))
        undated = transport.send(push(2, IOS, "tok-2"))
    for result in (dated, undated):
        assert result.outcome is Outcome.PERMANENT
        assert result.extra["dead_address"] is True
        assert result.extra["source"] == "apns"
        assert result.extra["failure_reason"] == 1
        assert result.extra["apns_reason"] == "Unregistered"
    assert json.loads(dated.provider_answer or "") == {
        "reason": "Unregistered",
        "timestamp": int(invalid_since.timestamp() * 1000),
    }
    assert dated.error == (
        "APNs Unregistered (HTTP 410): the token is no longer valid for the topic "
        "(confirmed by APNs at 2026-12-01T09:30:15+00:00)"  # milliseconds, not seconds
    )
    assert undated.error == "APNs Unregistered (HTTP 410): the token is no longer valid for the topic"


@pytest.mark.parametrize("mode", ["goaway", "lost answer"])
def test_apns_connection_ended_mid_burst_loses_nothing_and_doubles_nothing(tmp_path, monkeypatch, mode):
    options = {"goaway_after": 3} if mode == "goaway" else {"lose_answer_after": 3}
    with FakeApns(tmp_path, latency=0.01, **options) as apns:  # type: ignore[arg-type]
        use(monkeypatch, "mc_push_ios", apns.connection(max_connections=4))
        make = transport_for
        messages = [push(n, IOS, f"tok-{n}") for n in range(1, 61)]
        with TransportPool(make(IOS), lambda: make(IOS)) as pool, ThreadPoolExecutor(4) as threads:
            results = list(threads.map(pool.send, messages))
    assert [r.outcome for r in results] == [Outcome.SENT] * 60
    assert sorted(apns.answered_ids) == sorted(apns_id(n) for n in range(1, 61))  # once each
    assert apns.goaways >= 10
    assert apns.connections >= 4 + apns.goaways
    assert [r.message_id for r in results] == [apns_id(n) for n in range(1, 61)]


def test_a_provider_trickling_its_answer_cannot_stretch_the_deadline(monkeypatch, fcm):
    """Each byte comes before the read timeout, the whole answer never: the deadline ends it."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    use(monkeypatch, "mc_push_android", fcm.connection(base_url=f"http://127.0.0.1:{port}", deadline=1))
    try:
        with fcm_transport(timeout=5) as transport:
            start = time.monotonic()
            result = transport.send(push())
            elapsed = time.monotonic() - start
    finally:
        stop.set()
        listener.close()
    assert result.outcome is Outcome.TRANSIENT
    assert "no complete answer within 1 s" in (result.error or "")
    assert elapsed < 2.5
