"""Twilio status callbacks: Twilio's published signature example, then signed documented callbacks."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

import pytest

from messagecenter.core.errors import ConfigError
from messagecenter.feedback.webhooks import twilio
from messagecenter.feedback.webhooks.base import (
    FeedbackEvent,
    FeedbackKind,
    PayloadError,
    ProviderSecret,
    Severity,
    SignatureError,
    WebhookRequest,
)
from tests.support.webhooks.samples import fixture_bytes
from tests.support.webhooks.twilio import TOKEN, sign

# Twilio's security documentation example (also checked against twilio-python 9.13's RequestValidator).
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

SECRET = ProviderSecret(password=TOKEN)
URL = "https://mc.example.com/api/v1/feedback/twilio?mc_event_id=72057594037927937"
FORM = "application/x-www-form-urlencoded"


def request(
    body: bytes, signature: str | None, url: str = URL, content_type: str = FORM, **headers: str
) -> WebhookRequest:
    all_headers = {"Content-Type": content_type, **headers}
    if signature is not None:
        all_headers["X-Twilio-Signature"] = signature
    return WebhookRequest("POST", url, all_headers, body)


def test_twilios_documented_example() -> None:
    params = list(DOC_PARAMS.items())
    assert twilio.compute_signature(DOC_TOKEN, DOC_URL, params) == DOC_SIGNATURE
    body = urlencode(DOC_PARAMS).encode()

    twilio.verify(request(body, DOC_SIGNATURE, DOC_URL), ProviderSecret(password=DOC_TOKEN))

    tampered = urlencode({**DOC_PARAMS, "Digits": "9999"}).encode()
    with pytest.raises(SignatureError, match="does not match"):
        twilio.verify(request(tampered, DOC_SIGNATURE, DOC_URL), ProviderSecret(password=DOC_TOKEN))
    with pytest.raises(SignatureError):  # the query string is signed too
        twilio.verify(
            request(body, DOC_SIGNATURE, DOC_URL.replace("foo=1", "foo=3")),
            ProviderSecret(password=DOC_TOKEN),
        )


def test_a_signed_delivered_callback_is_verified_and_parsed() -> None:
    body = fixture_bytes("twilio/delivered.form")
    req = request(body, sign(URL, body))

    twilio.verify(req, SECRET)

    assert twilio.parse(req) == [
        FeedbackEvent(
            provider="twilio",
            provider_event_id="SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:delivered",
            kind=FeedbackKind.DELIVERED,
            provider_message_id="SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            recipient="+15558675310",
            text="delivered",
            event_id=72057594037927937,
        )
    ]


def test_undelivered_and_intermediate_statuses() -> None:
    undelivered = fixture_bytes("twilio/undelivered.form")
    [failed] = twilio.parse(request(undelivered, sign(URL, undelivered)))
    assert (failed.kind, failed.severity, failed.text, failed.provider_event_id) == (
        FeedbackKind.FAILED,
        Severity.TEMPORARY,
        "undelivered: 30003",
        "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:undelivered",
    )
    assert twilio.parse(request(fixture_bytes("twilio/sent.form"), None)) == []
    permanent = undelivered.replace(b"30003", b"30005") + b"&ErrorMessage=Unknown+destination+handset"
    assert [(e.severity, e.text) for e in twilio.parse(request(permanent, None))] == [
        (Severity.PERMANENT, "undelivered: 30005 Unknown destination handset")
    ]
    stopped = undelivered.replace(b"30003", b"21610").replace(b"undelivered", b"failed")
    assert [e.kind for e in twilio.parse(request(stopped, None))] == [FeedbackKind.UNSUBSCRIBE]


def test_the_url_is_tried_with_and_without_its_default_port() -> None:
    body = fixture_bytes("twilio/delivered.form")
    with_port = URL.replace("mc.example.com", "mc.example.com:443")
    twilio.verify(request(body, sign(with_port, body), url=URL), SECRET)
    twilio.verify(request(body, sign(URL, body), url=with_port), SECRET)
    with pytest.raises(SignatureError):
        twilio.verify(request(body, sign(URL.replace("https", "http"), body), url=URL), SECRET)


def test_a_json_body_is_covered_by_body_sha256() -> None:
    payload = json.dumps({"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15558675310"}).encode()
    url = f"{URL}&bodySHA256={hashlib.sha256(payload).hexdigest()}"
    req = request(payload, sign(url, b""), url=url, content_type="application/json")

    twilio.verify(req, SECRET)
    assert [e.kind for e in twilio.parse(req)] == [FeedbackKind.DELIVERED]

    altered = payload.replace(b"delivered", b"failed")
    with pytest.raises(SignatureError, match="bodySHA256"):
        twilio.verify(request(altered, sign(url, b""), url=url, content_type="application/json"), SECRET)
    with pytest.raises(SignatureError, match="bodySHA256"):  # a JSON body the signature does not cover
        twilio.verify(request(payload, sign(URL, b""), content_type="application/json"), SECRET)


def test_the_algorithm_named_in_the_signature_settings_header() -> None:
    body = fixture_bytes("twilio/delivered.form")
    settings = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"}
    twilio.verify(request(body, sign(URL, body, digest="sha256"), **settings), SECRET)
    with pytest.raises(SignatureError):  # a SHA-1 signature does not pass as SHA-256
        twilio.verify(request(body, sign(URL, body), **settings), SECRET)
    unknown = {"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA3"}
    with pytest.raises(SignatureError, match="algorithm"):
        twilio.verify(request(body, sign(URL, body), **unknown), SECRET)


def test_a_missing_signature_or_token_is_refused() -> None:
    body = fixture_bytes("twilio/delivered.form")
    with pytest.raises(SignatureError, match="missing"):
        twilio.verify(request(body, None), SECRET)
    with pytest.raises(SignatureError):
        twilio.verify(request(body, sign(URL, body, token="another token")), SECRET)
    with pytest.raises(ConfigError, match="mc_feedback_twilio"):
        twilio.verify(request(body, sign(URL, body)), ProviderSecret())


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", FORM),
        (b"MessageStatus=delivered", FORM),
        (b"\xff\xfe=1", FORM),
        (b"not json", "application/json"),
        (b"[]", "application/json"),
        (b'{"MessageSid": ["SM1"]}', "application/json"),
    ],
)
def test_garbage_is_a_payload_error(body: bytes, content_type: str) -> None:
    with pytest.raises(PayloadError):
        twilio.parse(
            request(
                body, None, url="https://mc.example.com/api/v1/feedback/twilio", content_type=content_type
            )
        )
