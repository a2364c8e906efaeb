"""HttpTransport (SMS and push) against a real local HTTP server, through Airflow env connections."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from messagecenter.airflow.transports import http_transport, transport_for
from messagecenter.core import settings as config
from messagecenter.delivery import HttpTransport, Outcome, OutgoingMessage, SmtpTransport
from tests.support.sinks import HttpSink, Provider, Reply, free_port

CONN_ID = "mc_http_test"
ENV = f"AIRFLOW_CONN_{CONN_ID.upper()}"


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    """A running provider, and CONN_ID pointing at its /v1/send endpoint (basic auth)."""
    with HttpSink() as server:
        use_connection(monkeypatch, server.port, login="acme", password="s3cret pass", endpoint="/v1/send")
        yield server


def use_connection(
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    *,
    login: str | None = None,
    password: str | None = None,
    **extra: Any,
) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "login": login, "password": password}
    monkeypatch.setenv(ENV, json.dumps({**conn, "extra": extra}))


def sms(event_id: int = 7, **kwargs: Any) -> OutgoingMessage:
    return OutgoingMessage(event_id=event_id, channel=1, address="+33612345678", text="Code: 1234", **kwargs)


def push(channel: int, **kwargs: Any) -> OutgoingMessage:
    return OutgoingMessage(
        event_id=9, channel=channel, address="tok-abc", subject="Parcel", text="It is on its way", **kwargs
    )


def test_sms_is_posted_as_json_with_basic_auth(provider):
    with http_transport(CONN_ID) as transport:
        result = transport.send(sms())

    assert result.outcome is Outcome.SENT, result.error
    assert result.message_id == "m-1"
    assert result.provider_answer == '{"id": "m-1"}'
    assert result.extra["http_status"] == 200
    [request] = provider.requests
    assert request.path == "/v1/send"
    assert request.body == {"to": "+33612345678", "text": "Code: 1234", "event_id": 7}
    assert request.headers["Content-Type"] == "application/json"
    expected = base64.b64encode(b"acme:s3cret pass").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize(("channel", "platform"), [(41, "ios"), (42, "android")])
def test_push_body(provider, channel, platform):
    with http_transport(CONN_ID) as transport:
        with_data = transport.send(push(channel, data={"order": 42, "deep_link": "app://o/42"}))
        without_data = transport.send(push(channel))

    assert with_data.outcome is without_data.outcome is Outcome.SENT
    assert provider.requests[0].body == {
        "to": "tok-abc",
        "platform": platform,
        "title": "Parcel",
        "body": "It is on its way",
        "data": {"order": 42, "deep_link": "app://o/42"},
        "event_id": 9,
    }
    assert provider.requests[1].body["data"] == {}


def test_bearer_token_and_extra_headers(monkeypatch, provider):
    use_connection(monkeypatch, provider.port, token="tok-XYZ", headers={"X-Api-Key": "key-1"})
    with http_transport(CONN_ID) as transport:
        transport.send(sms())

    headers = provider.requests[0].headers
    assert headers["Authorization"] == "Bearer tok-XYZ"
    assert headers["X-Api-Key"] == "key-1"
    assert provider.requests[0].path == "/"  # default endpoint


def test_uri_connection_with_schema_as_path(monkeypatch, provider):
    # The URI form operators type: the scheme part is the connection type, the path is the schema.
    monkeypatch.setenv(ENV, f"http://bob:p%40ss@127.0.0.1:{provider.port}/http?endpoint=%2Fsms")
    with http_transport(CONN_ID) as transport:
        result = transport.send(sms())

    assert result.outcome is Outcome.SENT, result.error
    assert provider.requests[0].path == "/sms"
    assert provider.requests[0].headers["Authorization"] == "Basic " + base64.b64encode(b"bob:p@ss").decode()


@pytest.mark.parametrize(
    ("reply", "outcome", "message_id"),
    [
        (Reply(201, '{"message_id": 987}'), Outcome.SENT, "987"),
        (Reply(202, "queued"), Outcome.SENT, None),
        (Reply(400, '{"error": "invalid number"}'), Outcome.PERMANENT, None),
        (Reply(404, "no such route"), Outcome.PERMANENT, None),
        (Reply(429, "slow down", headers=(("Retry-After", "30"),)), Outcome.TRANSIENT, None),
        (Reply(500, "boom"), Outcome.TRANSIENT, None),
        (Reply(503, "maintenance"), Outcome.TRANSIENT, None),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else None,
)
def test_status_classification(provider, reply, outcome, message_id):
    provider.replies.append(reply)
    with http_transport(CONN_ID) as transport:
        result = transport.send(sms())

    assert result.outcome is outcome
    assert result.message_id == message_id
    assert result.provider_answer == reply.body
    assert result.extra["http_status"] == reply.status
    if outcome is not Outcome.SENT:
        assert result.error.startswith(f"HTTP {reply.status}")
    if reply.status == 429:
        assert result.extra["retry_after"] == 30.0


def test_long_answer_is_truncated(provider):
    provider.replies.append(Reply(500, "x" * 5000))
    with http_transport(CONN_ID) as transport:
        result = transport.send(sms())

    assert result.outcome is Outcome.TRANSIENT
    assert len(result.provider_answer) == 1000


def test_slow_provider_times_out_as_transient(provider):
    provider.replies.append(Reply(delay=1.0))
    with http_transport(CONN_ID, timeout=0.2) as transport:
        started = time.monotonic()
        result = transport.send(sms())
        elapsed = time.monotonic() - started

    assert result.outcome is Outcome.TRANSIENT
    assert "timeout" in result.error
    assert elapsed < 0.9


def test_closed_port_is_transient_and_secrets_stay_out(monkeypatch):
    use_connection(monkeypatch, free_port(), login="acme", password="hunter22", token="tok-SECRET")
    with http_transport(CONN_ID) as transport:
        results = [transport.send(sms()), transport.send(push(41))]

    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert "ConnectError" in results[0].error
    assert not any("hunter22" in r.error or "tok-SECRET" in r.error for r in results)


def test_undefined_connection_is_transient():
    with http_transport("mc_http_not_defined") as transport:
        result = transport.send(sms())

    assert result.outcome is Outcome.TRANSIENT
    assert "mc_http_not_defined" in result.error


def test_one_pooled_client_per_with_block(provider):
    with http_transport(CONN_ID) as transport:
        results = [transport.send(sms(event_id=i)) for i in range(3)]
    with http_transport(CONN_ID) as transport:
        results.append(transport.send(sms(event_id=3)))

    assert [r.outcome for r in results] == [Outcome.SENT] * 4
    assert [r.body["event_id"] for r in provider.requests] == [0, 1, 2, 3]
    first_block = {r.client for r in provider.requests[:3]}
    assert len(first_block) == 1  # kept-alive connection
    assert provider.requests[3].client not in first_block


@pytest.mark.parametrize(
    "message",
    [OutgoingMessage(event_id=1, channel=0, address="a@example.org"), push(41, data={"x": float("nan")})],
    ids=["email-channel", "not-json"],
)
def test_unsendable_message_is_permanent(provider, message):
    with http_transport(CONN_ID) as transport:
        result = transport.send(message)

    assert result.outcome is Outcome.PERMANENT
    assert provider.requests == []


def test_send_outside_with_block_does_not_raise():
    assert http_transport(CONN_ID).send(sms()).outcome is Outcome.TRANSIENT


@pytest.mark.parametrize(
    ("channel", "cls", "conn_id"),
    [
        (0, SmtpTransport, config.SMTP_CONN_ID),
        (1, HttpTransport, config.SMS_CONN_ID),
        (41, HttpTransport, config.PUSH_CONN_ID),
        (42, HttpTransport, config.PUSH_CONN_ID),
    ],
)
def test_transport_for(channel, cls, conn_id):
    transport = transport_for(channel)
    assert type(transport) is cls
    assert transport.name == conn_id


def test_transport_for_unknown_channel():
    with pytest.raises(ValueError, match="channel 7"):
        transport_for(7)
