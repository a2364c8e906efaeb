"""Vonage delivery receipts: the documented ``sig`` scheme (MD5 hash and HMACs), and the documented DLR."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from devstack.sms_rest import vonage_signature

from messagecenter.core.errors import ConfigError
from messagecenter.feedback import vonage_signing
from messagecenter.feedback.webhooks import vonage
from messagecenter.feedback.webhooks.base import (
    FeedbackEvent,
    FeedbackKind,
    PayloadError,
    ProviderSecret,
    Severity,
    SignatureError,
    WebhookRequest,
)
from tests.support.webhooks.vonage import receipt

SIGNATURE_SECRET = "6C9FE10ba8b84a8dB94A3e8C1b0fE6e2"
URL = "https://mc.example.com/api/v1/feedback/vonage"


def post_json(params: dict[str, Any]) -> WebhookRequest:
    return WebhookRequest("POST", URL, {"Content-Type": "application/json"}, json.dumps(params).encode())


def post_form(params: dict[str, str]) -> WebhookRequest:
    body = urlencode(params).encode()
    return WebhookRequest("POST", URL, {"Content-Type": "application/x-www-form-urlencoded"}, body)


def get(params: dict[str, str]) -> WebhookRequest:
    return WebhookRequest("GET", f"{URL}?{urlencode(params)}", {})


def test_the_signature_is_vonages_on_vonages_own_example() -> None:
    # The vector of Vonage's Python SDK tests (secret "secret", MD5 hash); both the documented steps
    # and the implementation that signs our SMS and checks receipts give it.
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert vonage_signature(params, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"
    assert vonage_signing.compute_signature("secret", params) == "6af838ef94998832dbfc29020b564830"
    for method in vonage_signing.METHODS:
        assert vonage_signing.compute_signature("secret", params, method) == (
            vonage_signature(params, "secret", method).lower()
        )
    signed = vonage_signing.sign({"a": "1", "b": "2"}, "secret", "md5hash", timestamp=1461605396)
    assert signed == params | {"sig": "6af838ef94998832dbfc29020b564830"}


def test_a_signed_receipt_is_verified_and_parsed() -> None:
    params = receipt()
    req = post_json(params | {"sig": vonage_signature(params, SIGNATURE_SECRET, "md5hash")})

    vonage.verify(req, ProviderSecret(password=SIGNATURE_SECRET))

    assert vonage.parse(req) == [
        FeedbackEvent(
            provider="vonage",
            provider_event_id="0A0000001234567B:delivered:2001011400",
            kind=FeedbackKind.DELIVERED,
            provider_message_id="0A0000001234567B",
            recipient="447700900000",
            text="delivered: 0 Delivered",
            occurred_at=datetime(2020, 1, 1, 14, 0, tzinfo=UTC),
        )
    ]


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
@pytest.mark.parametrize("send", [post_json, post_form, get], ids=["json", "form", "get"])
def test_each_hmac_method_and_transport(method: str, send: Any) -> None:
    params = receipt(**{"client-ref": "mc_event_id=42", "status": "failed", "err-code": "3"})
    params["sig"] = vonage_signature(params, SIGNATURE_SECRET, method)
    req = send(params)

    vonage.verify(req, ProviderSecret(password=SIGNATURE_SECRET, extra={"signature_method": method}))

    [event] = vonage.parse(req)
    assert (event.kind, event.severity, event.text, event.event_id) == (
        FeedbackKind.FAILED,
        Severity.PERMANENT,
        "failed: 3 Absent Subscriber - Permanent",
        42,
    )


def test_ampersands_and_equals_signs_in_values_are_signed_as_underscores() -> None:
    params = receipt(**{"client-ref": "a&b=c"})
    params["sig"] = vonage_signature(params, SIGNATURE_SECRET, "md5hash")
    vonage.verify(post_form(params), ProviderSecret(password=SIGNATURE_SECRET))
    assert vonage.parse(post_form(params))[0].event_id is None  # not one of our ids


@pytest.mark.parametrize(
    "change",
    [
        {"sig": None},  # missing
        {"status": "failed"},  # tampered after signing
        {"sig": "0" * 32},
        {"timestamp": str(int(time.time()) - 16 * 60)},  # stale (signed below with the stale time)
        {"timestamp": None},
    ],
    ids=["missing sig", "tampered", "wrong sig", "stale", "no timestamp"],
)
def test_unsigned_tampered_or_stale_receipts_are_refused(change: dict[str, str | None]) -> None:
    params = receipt()
    if "timestamp" in change:
        params = {k: v for k, v in (params | change).items() if v is not None}
    params["sig"] = vonage_signature(params, SIGNATURE_SECRET, "md5hash")
    params = {k: v for k, v in (params | change).items() if v is not None}
    with pytest.raises(SignatureError):
        vonage.verify(post_json(params), ProviderSecret(password=SIGNATURE_SECRET))


def test_a_signature_with_another_method_or_secret_is_refused() -> None:
    params = receipt()
    params["sig"] = vonage_signature(params, SIGNATURE_SECRET, "sha256")
    with pytest.raises(SignatureError):
        vonage.verify(post_json(params), ProviderSecret(password=SIGNATURE_SECRET))  # md5hash configured
    with pytest.raises(SignatureError):
        vonage.verify(
            post_json(params), ProviderSecret(password="other", extra={"signature_method": "sha256"})
        )


def test_unsigned_receipts_need_an_explicit_choice() -> None:
    unsigned = post_json(receipt())
    with pytest.raises(ConfigError, match="allow_unsigned"):
        vonage.verify(unsigned, ProviderSecret())
    vonage.verify(unsigned, ProviderSecret(extra={"allow_unsigned": True}))
    with pytest.raises(SignatureError, match="missing sig"):  # a secret is set: signing is required
        vonage.verify(unsigned, ProviderSecret(password=SIGNATURE_SECRET, extra={"allow_unsigned": True}))
    with pytest.raises(ConfigError, match="signature_method"):
        vonage.verify(unsigned, ProviderSecret(password=SIGNATURE_SECRET, extra={"signature_method": "sha3"}))


@pytest.mark.parametrize(
    ("status", "error", "kind", "severity"),
    [
        ("expired", "2", FeedbackKind.FAILED, Severity.TEMPORARY),
        ("rejected", "6", FeedbackKind.FAILED, None),
        ("buffered", "0", FeedbackKind.DEFERRED, Severity.TEMPORARY),
        ("unknown", "1", FeedbackKind.IGNORED, None),
    ],
)
def test_statuses(status: str, error: str, kind: FeedbackKind, severity: Severity | None) -> None:
    [event] = vonage.parse(post_json(receipt(status=status, **{"err-code": error, "client-ref": "17"})))
    assert (event.kind, event.severity, event.event_id) == (kind, severity, 17)
    assert vonage.parse(post_json(receipt(status="accepted"))) == []


@pytest.mark.parametrize(
    "req",
    [
        WebhookRequest("POST", URL, {"Content-Type": "application/json"}, b"not json"),
        WebhookRequest("POST", URL, {"Content-Type": "application/json"}, b'{"messageId": {"a": 1}}'),
        WebhookRequest("POST", URL, {"Content-Type": "application/json"}, b'{"status": "delivered"}'),
        WebhookRequest("GET", f"{URL}?messageId=1&messageId=2", {}),
        WebhookRequest("POST", URL, {"Content-Type": "application/json"}, b"[" * 100_000),
    ],
    ids=["not json", "nested", "no messageId", "repeated", "deep"],
)
def test_garbage_is_a_payload_error(req: WebhookRequest) -> None:
    with pytest.raises(PayloadError):
        vonage.parse(req)
