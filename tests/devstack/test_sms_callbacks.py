"""The status callbacks of the Twilio and Vonage fakes (``devstack.sms_rest``): posted after the
answer, in the providers' format, signed so that our webhook code accepts them with the account's
secret and refuses them with another one.

The fakes sign with their own implementation of the providers' documented schemes; here a local
server receives what they post, and ``messagecenter.feedback.webhooks`` verifies and parses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from devstack.sinks import HttpServer
from devstack.sms_rest import CALLBACK_TRIES, FakeTwilio, FakeVonage, running

from messagecenter.airflow.transports import http_transport
from messagecenter.core.settings import get_settings
from messagecenter.delivery import Outcome, OutgoingMessage
from messagecenter.feedback.webhooks import ProviderSecret, SignatureError, WebhookRequest, twilio, vonage

CONN_ID = "mc_sms_callbacks_test"
DELAY = 0.3


@dataclass
class Posted:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class Receiver(BaseHTTPRequestHandler):
    """Records each request; answers ``statuses`` in turn (200 once they are used up)."""

    received: list[Posted]
    statuses: list[int]
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        posted = Posted("POST", f"http://{self.headers['Host']}{self.path}", dict(self.headers.items()), body)
        with self.lock:
            self.received.append(posted)
            status = self.statuses.pop(0) if self.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpServer, type[Receiver]]]:
    """A server standing for our API: ``MC_PUBLIC_URL`` points at it, so callbacks land there."""
    handler = type("Handler", (Receiver,), {"received": [], "statuses": []})
    with HttpServer(handler) as server:
        monkeypatch.setenv("MC_PUBLIC_URL", f"http://127.0.0.1:{server.port}/messagecenter")
        get_settings.cache_clear()
        yield server, handler
    get_settings.cache_clear()


def send(monkeypatch: pytest.MonkeyPatch, connection: str, *messages: OutgoingMessage) -> list[Any]:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", connection)
    with http_transport(CONN_ID) as transport:
        results = [transport.send(m) for m in messages]
    assert [r.outcome for r in results] == [Outcome.SENT] * len(messages), [r.error for r in results]
    return results


def as_webhook(posted: Posted) -> WebhookRequest:
    return WebhookRequest(posted.method, posted.url, posted.headers, posted.body)


def test_twilio_posts_sent_then_delivered_signed_with_the_auth_token(monkeypatch, receiver) -> None:
    _, handler = receiver
    with running(FakeTwilio(token="the-auth-token", callback_delay=DELAY)) as fake:
        (ok, dead) = send(
            monkeypatch,
            fake.connection(),
            OutgoingMessage(event_id=11, channel=1, address="+33612345678", text="code 1"),
            OutgoingMessage(event_id=12, channel=1, address="+999123456", text="code 2"),
        )
        callbacks = fake.wait_for_callbacks(4)
        assert min(c.status for c in callbacks) == max(c.status for c in callbacks) == 200
        assert fake.violations == []

    assert len(handler.received) == 4
    events: dict[tuple[int, str], Any] = {}
    for posted in handler.received:
        assert posted.headers["Content-Type"] == "application/x-www-form-urlencoded"
        request = as_webhook(posted)
        twilio.verify(request, ProviderSecret(password="the-auth-token"))
        with pytest.raises(SignatureError):
            twilio.verify(request, ProviderSecret(password="another-token"))
        for event in twilio.parse(request):  # "sent" is skipped: nothing to apply yet
            events[event.event_id, event.kind] = event
    assert set(events) == {(11, "delivered"), (12, "failed")}
    assert events[11, "delivered"].provider_message_id == ok.message_id
    assert events[12, "failed"].provider_message_id == dead.message_id
    assert "30003" in (events[12, "failed"].text or "")
    forms = [dict(as_webhook(posted).form_items()) for posted in handler.received]
    statuses = {
        sid: [f["MessageStatus"] for f in forms if f["MessageSid"] == sid] for sid in events_sids(forms)
    }
    assert statuses == {ok.message_id: ["sent", "delivered"], dead.message_id: ["sent", "undelivered"]}
    delivered = next(f for f in forms if f["MessageStatus"] == "delivered")
    common = {"AccountSid": fake.account_sid, "ApiVersion": "2010-04-01", "To": "+33612345678"}
    assert delivered | common | {"SmsStatus": "delivered", "SmsSid": ok.message_id} == delivered


def events_sids(forms: list[dict[str, str]]) -> list[str]:
    return list(dict.fromkeys(f["MessageSid"] for f in forms))


@pytest.mark.parametrize("method", ["md5hash", "sha256"])
def test_vonage_posts_a_receipt_per_part_signed_with_the_signature_secret(
    monkeypatch, receiver, method
) -> None:
    _, handler = receiver
    fake = FakeVonage(signature_secret="the-signature-secret", signature_method=method, callback_delay=DELAY)
    with running(fake):
        (long, dead) = send(
            monkeypatch,
            fake.connection(signature_secret="the-signature-secret", signature_method=method),
            OutgoingMessage(event_id=21, channel=1, address="+447700900001", text="x" * 200),  # 2 parts
            OutgoingMessage(event_id=22, channel=1, address="+999123456", text="code"),
        )
        callbacks = fake.wait_for_callbacks(3)
        assert {c.status for c in callbacks} == {200}
        assert fake.violations == []

    secret = ProviderSecret(password="the-signature-secret", extra={"signature_method": method})
    parts = [m["message-id"] for r in fake.requests for m in r.answer["messages"]]
    assert parts[0] == long.message_id
    assert parts[2] == dead.message_id
    kinds = []
    for posted in handler.received:
        assert posted.url == f"{get_settings().feedback.public_url}/api/v1/feedback/vonage"
        request = as_webhook(posted)
        vonage.verify(request, secret)
        with pytest.raises(SignatureError):
            vonage.verify(request, ProviderSecret(password="another", extra={"signature_method": method}))
        [event] = vonage.parse(request)
        params = dict(request.form_items())
        kinds.append((event.event_id, event.kind, event.provider_message_id, params["err-code"]))
        assert {"api-key", "msisdn", "to", "network-code", "price", "scts", "message-timestamp"} <= set(
            params
        )
        assert {"timestamp", "nonce", "sig"} <= set(params)
    assert sorted(kinds) == [
        (21, "delivered", parts[0], "0"),
        (21, "delivered", parts[1], "0"),
        (22, "failed", parts[2], "1"),
    ]


def test_vonage_receipts_are_unsigned_without_a_signature_secret(monkeypatch, receiver) -> None:
    _, handler = receiver
    with running(FakeVonage(callback_delay=DELAY)) as fake:
        send(
            monkeypatch,
            fake.connection(),
            OutgoingMessage(event_id=31, channel=1, address="+447700900001", text="hi"),
        )
        fake.wait_for_callbacks(1)
    params = dict(as_webhook(handler.received[0]).form_items())
    assert "sig" not in params
    assert params["client-ref"] == "mc_event_id=31"
    with pytest.raises(SignatureError, match="missing sig"):
        vonage.verify(as_webhook(handler.received[0]), ProviderSecret(password="a-secret"))


def test_a_callback_answered_5xx_is_posted_again_and_a_4xx_is_not(monkeypatch, receiver) -> None:
    _, handler = receiver
    handler.statuses[:] = [503, 401]
    with running(FakeTwilio(callback_delay=DELAY)) as fake:
        send(
            monkeypatch,
            fake.connection(),
            OutgoingMessage(event_id=41, channel=1, address="+33612345678", text="x"),
        )
        callbacks = {c.params["MessageStatus"]: c for c in fake.wait_for_callbacks(2)}
    # "sent" got the 503 and came again a second later; "delivered", posted meanwhile, got the 401.
    assert (callbacks["sent"].status, callbacks["sent"].tries) == (200, 2)
    assert (callbacks["delivered"].status, callbacks["delivered"].tries) == (401, 1)  # not retried
    assert [dict(as_webhook(p).form_items())["MessageStatus"] for p in handler.received] == [
        "sent",
        "delivered",
        "sent",
    ]
    assert CALLBACK_TRIES > 2
