"""SendGrid signed Event Webhook: SendGrid's own published vector, then generated keys on the docs sample."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from messagecenter.core.errors import ConfigError
from messagecenter.feedback.webhooks import sendgrid
from messagecenter.feedback.webhooks.base import (
    FeedbackEvent,
    FeedbackKind,
    PayloadError,
    ProviderSecret,
    Severity,
    SignatureError,
    VerifyContext,
    WebhookRequest,
)
from tests.support.webhooks.samples import fixture_bytes
from tests.support.webhooks.sendgrid import public_key_as_sendgrid_shows_it

URL = "https://mc.example.com/api/v1/feedback/sendgrid"

# The test vector of SendGrid's Python library (test/unit/test_eventwebhook.py): a real key, signature
# and payload, the payload serialised exactly as SendGrid posted it (sorted keys, no spaces, CRLF).
VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
VECTOR_OTHER_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj"
    "+y7GjUuFDb/R1NGe1OPzpA=="
)
VECTOR_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
)
VECTOR_BAD_SIGNATURE = (
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0="
)
VECTOR_TIMESTAMP = "1600112502"
VECTOR_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()
AT_VECTOR_TIME = VerifyContext(clock=lambda: float(VECTOR_TIMESTAMP) + 30)


def request(body: bytes, signature: str | None, timestamp: str | None) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = signature
    if timestamp is not None:
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = timestamp
    return WebhookRequest("POST", URL, headers, body)


def test_sendgrids_published_vector_verifies_and_parses() -> None:
    req = request(VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)

    sendgrid.verify(req, ProviderSecret(extra={"public_key": VECTOR_KEY}), AT_VECTOR_TIME)
    sendgrid.verify(req, ProviderSecret(password=VECTOR_KEY), AT_VECTOR_TIME)  # the key in the password

    assert sendgrid.parse(req) == [
        FeedbackEvent(
            provider="sendgrid",
            provider_event_id="ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
            kind=FeedbackKind.FAILED,
            provider_message_id="LRzXl_NHStOGhQ4kofSm_A",
            recipient="hello@world.com",
            text="Bounced Address",
            occurred_at=datetime(2020, 9, 14, 19, 41, 32, tzinfo=UTC),
        )
    ]


@pytest.mark.parametrize(
    ("key", "body", "signature", "timestamp"),
    [
        (VECTOR_OTHER_KEY, VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP),  # wrong key
        (VECTOR_KEY, b"payload", VECTOR_SIGNATURE, VECTOR_TIMESTAMP),  # tampered body
        (
            VECTOR_KEY,
            VECTOR_BODY.rstrip(),
            VECTOR_SIGNATURE,
            VECTOR_TIMESTAMP,
        ),  # body "cleaned up" by a proxy
        (VECTOR_KEY, VECTOR_BODY, VECTOR_BAD_SIGNATURE, VECTOR_TIMESTAMP),  # another signature
        (VECTOR_KEY, VECTOR_BODY, VECTOR_SIGNATURE, "1600112503"),  # another timestamp
        (VECTOR_KEY, VECTOR_BODY, "not base64!", VECTOR_TIMESTAMP),
        (VECTOR_KEY, VECTOR_BODY, None, VECTOR_TIMESTAMP),  # unsigned
        (VECTOR_KEY, VECTOR_BODY, VECTOR_SIGNATURE, None),
        (VECTOR_KEY, VECTOR_BODY, VECTOR_SIGNATURE, "timestamp"),
    ],
)
def test_anything_but_the_signed_request_is_refused(
    key: str, body: bytes, signature: str | None, timestamp: str | None
) -> None:
    with pytest.raises(SignatureError):
        sendgrid.verify(request(body, signature, timestamp), ProviderSecret(password=key), AT_VECTOR_TIME)


def test_a_stale_or_future_timestamp_is_refused_even_when_signed() -> None:
    req = request(VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
    secret = ProviderSecret(password=VECTOR_KEY)
    for offset in (16 * 60, -16 * 60):
        later = VerifyContext(clock=lambda offset=offset: float(VECTOR_TIMESTAMP) + offset)
        with pytest.raises(SignatureError, match="away from now"):
            sendgrid.verify(req, secret, later)
    # A wider window is a connection setting.
    wide = ProviderSecret(password=VECTOR_KEY, extra={"max_age_seconds": 3600})
    sendgrid.verify(req, wide, VerifyContext(clock=lambda: float(VECTOR_TIMESTAMP) + 30 * 60))


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def signed(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str | None = None) -> WebhookRequest:
    timestamp = timestamp or str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return request(body, base64.b64encode(signature).decode(), timestamp)


def test_the_documented_batch_gives_the_delivery_events(signing_key: ec.EllipticCurvePrivateKey) -> None:
    req = signed(signing_key, fixture_bytes("sendgrid/events.json"))
    sendgrid.verify(req, ProviderSecret(extra={"public_key": public_key_as_sendgrid_shows_it(signing_key)}))

    found = sendgrid.parse(req)

    # processed, open, click and group_resubscribe are skipped.
    assert [(e.kind, e.severity, e.text) for e in found] == [
        (FeedbackKind.DEFERRED, Severity.TEMPORARY, "400 try again later"),
        (FeedbackKind.DELIVERED, None, "250 OK"),
        (FeedbackKind.FAILED, Severity.PERMANENT, "5.0.0 500 unknown recipient"),
        (FeedbackKind.FAILED, None, "Bounced Address"),
        (FeedbackKind.COMPLAINT, None, None),
        (FeedbackKind.UNSUBSCRIBE, None, "unsubscribe"),
        (FeedbackKind.UNSUBSCRIBE, None, "group_unsubscribe"),
    ]
    assert {(e.recipient, e.provider_message_id, e.occurred_at) for e in found} == {
        ("example@test.com", "sg_message_id", datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC))
    }


def test_a_blocked_bounce_is_temporary(signing_key: ec.EllipticCurvePrivateKey) -> None:
    [blocked] = sendgrid.parse(signed(signing_key, fixture_bytes("sendgrid/bounce-blocked.json")))
    assert blocked == FeedbackEvent(
        provider="sendgrid",
        provider_event_id="Ym91bmNlLTQtNTA0ODUxOTUtZXVvMmlLeGRTYXlQRjRZRTQtLUk3QS0w",
        kind=FeedbackKind.FAILED,
        provider_message_id="euo2iKxdSayPF4YE4--I7A",
        recipient="noemail@this.does.not.exist.tld",
        severity=Severity.TEMPORARY,
        text="unable to get mx info: failed to get IPs from PTR record: lookup <nil>: unrecognized address",
        occurred_at=datetime(2025, 2, 23, 8, 45, 20, tzinfo=UTC),
    )


def test_custom_args_echo_our_event_id_and_unknown_events_are_kept() -> None:
    body = json.dumps(
        [
            {"event": "delivered", "email": "a@example.com", "sg_event_id": "e1", "mc_event_id": "123"},
            {"event": "teleported", "email": "a@example.com", "sg_event_id": "e2", "mc_event_id": 124},
            {"event": "dropped", "email": "a@example.com", "timestamp": 1, "reason": "Invalid"},
        ]
    ).encode()
    found = sendgrid.parse(request(body, None, None))
    assert [(e.kind, e.event_id, e.text) for e in found] == [
        (FeedbackKind.DELIVERED, 123, None),
        (FeedbackKind.IGNORED, 124, "teleported"),
        (FeedbackKind.FAILED, None, "Invalid"),
    ]
    # No sg_event_id (older payloads): a key from the event's own fields, the same on every retry.
    assert found[2].provider_event_id == sendgrid.parse(request(body, None, None))[2].provider_event_id


def test_a_connection_without_a_usable_key_is_a_configuration_error(
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    req = signed(signing_key, b"[]")
    rsa_der = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for secret in (
        ProviderSecret(),
        ProviderSecret(password="not a key"),
        ProviderSecret(password=base64.b64encode(rsa_der).decode()),
    ):
        with pytest.raises(ConfigError, match="mc_feedback_sendgrid"):
            sendgrid.verify(req, secret)
    pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sendgrid.verify(req, ProviderSecret(extra={"public_key": pem.decode()}))  # PEM is accepted too


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"event": "delivered"}', b"[1]", b'[{"event": ["x"]}]', b"[" * 100_000, b"\xff\xfe"],
)
def test_garbage_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        sendgrid.parse(request(body, None, None))
