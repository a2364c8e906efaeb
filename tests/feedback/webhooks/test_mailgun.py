"""Mailgun: HMAC in the body, single-use tokens, and the documented event payloads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from messagecenter.core.errors import ConfigError
from messagecenter.feedback.webhooks import mailgun
from messagecenter.feedback.webhooks.base import (
    FeedbackEvent,
    FeedbackKind,
    InMemoryReplayGuard,
    PayloadError,
    ProviderSecret,
    Severity,
    SignatureError,
    VerifyContext,
    WebhookRequest,
)
from tests.support.webhooks.mailgun import KEY, body
from tests.support.webhooks.samples import fixture_json

SECRET = ProviderSecret(password=KEY)
URL = "https://mc.example.com/api/v1/feedback/mailgun"


def request(data: bytes) -> WebhookRequest:
    return WebhookRequest("POST", URL, {"Content-Type": "application/json"}, data)


def fresh() -> VerifyContext:
    return VerifyContext(replay_guard=InMemoryReplayGuard())


def test_a_signed_permanent_failure_is_verified_and_parsed() -> None:
    req = request(body(fixture_json("mailgun/failed-permanent.json")))

    mailgun.verify(req, SECRET, fresh())

    assert mailgun.parse(req) == [
        FeedbackEvent(
            provider="mailgun",
            provider_event_id="2kFItcrLQuKTdp-Ia2Xr7w",
            kind=FeedbackKind.FAILED,
            provider_message_id="20260212174255.58bbb7ce85a423e5@mailgun.com",
            recipient="badrecipient@sample.mailgun.com",
            severity=Severity.PERMANENT,
            text="550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
            "[BN3PEPF0000B36D.namprd21.prod.outlook.com 2026-02-12T17:42:55.527Z 08DE657A58651558] | bounce",
            occurred_at=datetime.fromtimestamp(1770918175.5923693, UTC),
        )
    ]


def test_each_documented_event() -> None:
    parsed = {
        name: mailgun.parse(request(body(fixture_json(f"mailgun/{name}.json"))))
        for name in ("delivered", "failed-temporary", "complained", "unsubscribed", "opened")
    }
    summary = {
        name: [(e.kind, e.severity, e.text, e.recipient) for e in found] for name, found in parsed.items()
    }
    assert summary == {
        "delivered": [(FeedbackKind.DELIVERED, None, "250 OK", "recipient@sample.mailgun.com")],
        # temporary: Mailgun keeps retrying on its own.
        "failed-temporary": [
            (
                FeedbackKind.DEFERRED,
                Severity.TEMPORARY,
                "421 Your IP (161.38.194.10) is temporary blacklisted by an anti-troyan rule, retry later "
                "and/or visit http://sample.mailgun.com/ | generic",
                "tempfailrecipient@sample.mailgun.com",
            )
        ],
        "complained": [(FeedbackKind.COMPLAINT, None, None, "recipient@sample.mailgun.com")],
        "unsubscribed": [(FeedbackKind.UNSUBSCRIBE, None, None, "recipient@sample.mailgun.com")],
        "opened": [],
    }
    assert parsed["delivered"][0].provider_message_id == "20260203192030.53383e583ab41f62@sample.mailgun.com"


def test_user_variables_echo_our_event_id() -> None:
    data = fixture_json("mailgun/delivered.json")
    data["user-variables"] = {"mc_event_id": "9001", "other": "x"}
    data["message"]["headers"]["message-id"] = "<20260203192030.53383e583ab41f62@sample.mailgun.com>"
    [event] = mailgun.parse(request(body(data)))
    assert (event.event_id, event.provider_message_id) == (
        9001,
        "20260203192030.53383e583ab41f62@sample.mailgun.com",  # as the send API returns it, without <>
    )


def test_a_replayed_token_is_refused() -> None:
    context = fresh()
    req = request(body(fixture_json("mailgun/delivered.json")))
    mailgun.verify(req, SECRET, context)
    with pytest.raises(SignatureError, match="already used"):
        mailgun.verify(req, SECRET, context)


def test_a_forged_request_does_not_burn_the_token_of_the_genuine_one() -> None:
    context = fresh()
    data = fixture_json("mailgun/delivered.json")
    with pytest.raises(SignatureError, match="does not match"):
        mailgun.verify(request(body(data, key="guessed", token="t" * 50)), SECRET, context)
    mailgun.verify(request(body(data, token="t" * 50)), SECRET, context)


@pytest.mark.parametrize(
    "make",
    [
        lambda: body(fixture_json("mailgun/delivered.json"), key="another-key"),
        # Built when the test runs, not when it is collected: a long suite would age them.
        lambda: body(fixture_json("mailgun/delivered.json"), timestamp=int(time.time()) - 16 * 60),
        lambda: body(fixture_json("mailgun/delivered.json"), timestamp=int(time.time()) + 16 * 60),
        lambda: json.dumps({"event-data": fixture_json("mailgun/delivered.json")}).encode(),
        lambda: json.dumps({"signature": {"timestamp": "1", "token": "t"}, "event-data": {}}).encode(),
        lambda: json.dumps({"signature": "abc", "event-data": {}}).encode(),
    ],
    ids=["wrong key", "stale", "future", "no signature", "incomplete signature", "signature not an object"],
)
def test_unsigned_or_wrongly_signed_requests_are_refused(make: Callable[[], bytes]) -> None:
    with pytest.raises(SignatureError):
        mailgun.verify(request(make()), SECRET, fresh())


def test_a_captured_request_cannot_be_altered_and_played_again() -> None:
    """Mailgun signs timestamp + token only: the body is trusted because the token is fresh and unused."""
    context = fresh()
    genuine = json.loads(body(fixture_json("mailgun/delivered.json")))
    mailgun.verify(request(json.dumps(genuine).encode()), SECRET, context)
    genuine["event-data"]["recipient"] = "victim@example.com"
    with pytest.raises(SignatureError, match="already used"):
        mailgun.verify(request(json.dumps(genuine).encode()), SECRET, context)


def test_no_signing_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="mc_feedback_mailgun"):
        mailgun.verify(request(body(fixture_json("mailgun/delivered.json"))), ProviderSecret(), fresh())


def test_the_in_memory_guard_forgets_expired_tokens_and_stays_bounded() -> None:
    guard = InMemoryReplayGuard(max_entries=2)
    now = time.time()
    assert guard.first_use("a", now + 60)
    assert not guard.first_use("a", now + 60)
    assert guard.first_use("b", now - 1)  # already expired: a later use is a first use again
    assert guard.first_use("b", now + 60)
    assert guard.first_use("c", now + 60)  # evicts "a", the oldest
    assert guard.first_use("a", now + 60)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        json.dumps({"signature": {}}).encode(),
        json.dumps({"event-data": {"event": "delivered"}}).encode(),  # no id
        json.dumps({"event-data": {"event": "delivered", "id": "x", "message": "text"}}).encode(),
        json.dumps({"event-data": {"event": "delivered", "id": "x", "recipient": {"a": 1}}}).encode(),
        b"{" * 100_000,
    ],
)
def test_garbage_is_a_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        mailgun.parse(request(data))
