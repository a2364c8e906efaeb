"""Postmark: HTTP Basic credentials, and the documented webhook records."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from messagecenter.core.errors import ConfigError
from messagecenter.feedback.webhooks import postmark
from messagecenter.feedback.webhooks.base import (
    FeedbackEvent,
    FeedbackKind,
    PayloadError,
    ProviderSecret,
    Severity,
    SignatureError,
    WebhookRequest,
)
from tests.support.webhooks.postmark import basic
from tests.support.webhooks.samples import fixture_bytes, fixture_json

SECRET = ProviderSecret(login="postmark", password="s3cret:with colon")
URL = "https://mc.example.com/api/v1/feedback/postmark"


def request(body: bytes | dict[str, Any], authorization: str | None = None) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest("POST", URL, headers, data)


def test_the_right_credentials_pass_and_a_bounce_is_parsed() -> None:
    req = request(fixture_bytes("postmark/bounce.json"), basic("postmark", "s3cret:with colon"))

    postmark.verify(req, SECRET)

    assert postmark.parse(req) == [
        FeedbackEvent(
            provider="postmark",
            provider_event_id="4323372036854775807",
            kind=FeedbackKind.FAILED,
            provider_message_id="883953f4-6105-42a2-a16a-77a8eac79483",
            recipient="john@example.com",
            severity=Severity.PERMANENT,
            text="HardBounce: Test bounce details",
            occurred_at=datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC),
        )
    ]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic("postmark", "wrong"),
        basic("someone", "s3cret:with colon"),
        basic("postmark", "s3cret:with colon "),
        "Bearer " + base64.b64encode(b"postmark:s3cret:with colon").decode(),
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"no colon at all").decode(),
        "Basic",
    ],
)
def test_missing_or_wrong_credentials_are_refused(authorization: str | None) -> None:
    with pytest.raises(SignatureError):
        postmark.verify(request(fixture_bytes("postmark/delivery.json"), authorization), SECRET)


def test_no_password_in_the_connection_is_a_configuration_error() -> None:
    req = request(fixture_bytes("postmark/delivery.json"), basic("", ""))
    with pytest.raises(ConfigError, match="mc_feedback_postmark"):
        postmark.verify(req, ProviderSecret(login="postmark"))


def test_each_documented_record() -> None:
    found = {
        name: postmark.parse(request(fixture_bytes(f"postmark/{name}.json")))
        for name in ("delivery", "spam-complaint", "subscription-change", "open")
    }
    assert found["delivery"] == [
        FeedbackEvent(
            provider="postmark",
            provider_event_id="883953f4-6105-42a2-a16a-77a8eac79483:Delivery:john@example.com:2019-11-05T16:33:54.9070259Z",
            kind=FeedbackKind.DELIVERED,
            provider_message_id="883953f4-6105-42a2-a16a-77a8eac79483",
            recipient="john@example.com",
            text="Test delivery webhook details",
            occurred_at=datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC),
        )
    ]
    [complaint] = found["spam-complaint"]
    assert (complaint.kind, complaint.provider_event_id, complaint.recipient, complaint.text) == (
        FeedbackKind.COMPLAINT,
        "42",
        "john@example.com",
        "SpamComplaint: Test spam complaint details",
    )
    # Suppressed because of a hard bounce: the bounce itself came as its own record.
    [change] = found["subscription-change"]
    assert (change.kind, change.recipient, change.text) == (
        FeedbackKind.IGNORED,
        "bounced-address@wildbit.com",
        "suppressed: HardBounce: Recipient",
    )
    assert found["open"] == []


@pytest.mark.parametrize(
    ("bounce_type", "kind", "severity"),
    [
        ("SoftBounce", FeedbackKind.FAILED, Severity.TEMPORARY),
        ("Transient", FeedbackKind.DEFERRED, Severity.TEMPORARY),
        ("BadEmailAddress", FeedbackKind.FAILED, Severity.PERMANENT),
        ("AutoResponder", FeedbackKind.IGNORED, None),
        ("Unsubscribe", FeedbackKind.UNSUBSCRIBE, None),
        ("DMARCPolicy", FeedbackKind.FAILED, None),  # left to the qualification rules
        ("SomethingNew", FeedbackKind.FAILED, None),
    ],
)
def test_bounce_types(bounce_type: str, kind: FeedbackKind, severity: Severity | None) -> None:
    record = fixture_json("postmark/bounce.json") | {"Type": bounce_type}
    [event] = postmark.parse(request(record))
    assert (event.kind, event.severity, event.text) == (kind, severity, f"{bounce_type}: Test bounce details")


def test_a_manual_suppression_is_an_unsubscribe_and_metadata_echoes_our_event_id() -> None:
    record = fixture_json("postmark/subscription-change.json") | {
        "SuppressionReason": "ManualSuppression",
        "Metadata": {"mc_event_id": "77"},
    }
    [event] = postmark.parse(request(record))
    assert (event.kind, event.event_id) == (FeedbackKind.UNSUBSCRIBE, 77)
    reactivated = record | {"SuppressSending": False}
    assert postmark.parse(request(reactivated))[0].kind == FeedbackKind.IGNORED


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"RecordType": "Bounce"}',
        b'{"RecordType": "Bounce", "ID": 1, "Email": []}',
        b"[" * 10**5,
    ],
)
def test_garbage_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        postmark.parse(request(body))
