"""Amazon SES through SNS: signatures made with a generated certificate, AWS's documented samples."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from messagecenter.core.errors import ConfigError, TransientError
from messagecenter.feedback.webhooks import ses
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
from tests.support.webhooks.samples import fixture_json
from tests.support.webhooks.ses import (
    CERT_URL,
    TOPIC,
    Certificates,
    certificate,
    notification,
    signed,
)

SECRET = ProviderSecret(extra={"topic_arns": [TOPIC]})
URL = "https://mc.example.com/api/v1/feedback/ses"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def certs(key: rsa.RSAPrivateKey) -> Certificates:
    return Certificates({CERT_URL: certificate(key)})


def context(certs: Callable[[str], bytes]) -> VerifyContext:
    return VerifyContext(fetch_certificate=certs)


def request(message: dict[str, Any] | bytes) -> WebhookRequest:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
    return WebhookRequest("POST", URL, headers, body)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_bounce_is_verified_and_parsed(
    key: rsa.RSAPrivateKey, certs: Certificates, version: str
) -> None:
    req = request(signed(notification(fixture_json("ses/bounce.json")), key, version))

    ses.verify(req, SECRET, context(certs))

    assert certs.asked == [CERT_URL]
    assert ses.parse(req) == [
        FeedbackEvent(
            provider="ses",
            provider_event_id="22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324/jane@example.com",
            kind=FeedbackKind.FAILED,
            provider_message_id="00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
            recipient="jane@example.com",
            severity=Severity.PERMANENT,
            text="Permanent/General: smtp; 550 5.1.1 <jane@example.com>... User",
            occurred_at=datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC),
        )
    ]


def test_complaint_and_delivery_samples(key: rsa.RSAPrivateKey, certs: Certificates) -> None:
    complaint = request(signed(notification(fixture_json("ses/complaint.json")), key))
    delivery = request(signed(notification(fixture_json("ses/delivery.json")), key, "2"))
    for req in (complaint, delivery):
        ses.verify(req, SECRET, context(certs))

    [complained] = ses.parse(complaint)
    assert (complained.kind, complained.recipient, complained.text) == (
        FeedbackKind.COMPLAINT,
        "richard@example.com",
        "abuse",
    )
    assert complained.provider_message_id == "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000"
    [delivered] = ses.parse(delivery)
    assert (delivered.kind, delivered.recipient, delivered.text) == (
        FeedbackKind.DELIVERED,
        "jane@example.com",
        "250 ok:  Message 64111812 accepted",
    )


def test_a_transient_bounce_for_two_recipients_gives_two_soft_failures() -> None:
    event = fixture_json("ses/bounce.json")
    event["bounce"].update(bounceType="Transient", bounceSubType="MailboxFull")
    event["bounce"]["bouncedRecipients"] = [
        {
            "emailAddress": "jane@example.com",
            "status": "4.2.2",
            "diagnosticCode": "smtp; 452 4.2.2 Mailbox full",
        },
        {"emailAddress": "mary@example.com", "status": "5.4.4"},
    ]
    found = ses.parse(request(notification(event)))
    assert [(e.recipient, e.severity, e.text, e.provider_event_id) for e in found] == [
        (
            "jane@example.com",
            Severity.TEMPORARY,
            "Transient/MailboxFull: smtp; 452 4.2.2 Mailbox full",
            "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324/jane@example.com",
        ),
        (
            "mary@example.com",
            Severity.TEMPORARY,
            "Transient/MailboxFull: 5.4.4",
            "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324/mary@example.com",
        ),
    ]


def test_our_event_id_comes_back_in_a_header_or_a_tag() -> None:
    by_header = fixture_json("ses/delivery.json")
    by_header["mail"]["headers"].append({"name": "X-MC-Event-Id", "value": "72057594037927937"})
    by_tag = fixture_json("ses/delivery.json")
    by_tag["mail"]["tags"] = {"mc_event_id": ["-42"], "ses:configuration-set": ["mc"]}
    assert [e.event_id for e in ses.parse(request(notification(by_header)))] == [72057594037927937]
    assert [e.event_id for e in ses.parse(request(notification(by_tag)))] == [-42]
    assert [e.event_id for e in ses.parse(request(notification(fixture_json("ses/delivery.json"))))] == [None]


def test_event_publishing_types() -> None:
    delay = {
        "eventType": "DeliveryDelay",
        "mail": {"messageId": "m-1", "destination": ["a@example.com"]},
        "deliveryDelay": {
            "delayType": "MailboxFull",
            "timestamp": "2020-06-16T00:15:40.641Z",
            "delayedRecipients": [
                {"emailAddress": "a@example.com", "status": "4.2.2", "diagnosticCode": "smtp; 452"}
            ],
        },
    }
    [deferred] = ses.parse(request(notification(delay)))
    assert (deferred.kind, deferred.severity, deferred.text) == (
        FeedbackKind.DEFERRED,
        Severity.TEMPORARY,
        "MailboxFull: smtp; 452",
    )
    opened = {"eventType": "Open", "mail": {"messageId": "m-1"}, "open": {}}
    assert ses.parse(request(notification(opened))) == []
    novel = {"eventType": "Teleport", "mail": {"messageId": "m-1"}}
    [kept] = ses.parse(request(notification(novel)))
    assert (kept.kind, kept.text, kept.provider_message_id) == (FeedbackKind.IGNORED, "Teleport", "m-1")


def test_a_tampered_message_is_refused(key: rsa.RSAPrivateKey, certs: Certificates) -> None:
    message = signed(notification(fixture_json("ses/delivery.json")), key)
    message["Message"] = message["Message"].replace("jane@example.com", "victim@example.com")
    with pytest.raises(SignatureError, match="does not match"):
        ses.verify(request(message), SECRET, context(certs))


def test_a_signature_by_another_key_is_refused(certs: Certificates) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = signed(notification(fixture_json("ses/delivery.json")), other)
    with pytest.raises(SignatureError, match="does not match"):
        ses.verify(request(message), SECRET, context(certs))


def test_a_missing_or_malformed_signature_is_refused(key: rsa.RSAPrivateKey, certs: Certificates) -> None:
    message = signed(notification(fixture_json("ses/delivery.json")), key)
    for change in ({"Signature": None}, {"Signature": "not base64!"}, {"SignatureVersion": "3"}):
        broken = {k: v for k, v in {**message, **change}.items() if v is not None}
        with pytest.raises(SignatureError):
            ses.verify(request(broken), SECRET, context(certs))
    # A raw SES document (raw message delivery switched on) carries no signature at all.
    with pytest.raises(SignatureError):
        ses.verify(request(fixture_json("ses/delivery.json")), SECRET, context(certs))


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "https://s3.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "https://sns.us-west-2.amazonaws.com.evil.example/SimpleNotificationService-f3ecfb.pem",
        "https://sns.us-west-2.amazonaws.com@evil.example/SimpleNotificationService-f3ecfb.pem",
        "https://sns.us-west-2.amazonaws.com:8443/SimpleNotificationService-f3ecfb.pem",
        "https://sns.us-west-2.amazonaws.com/evil/SimpleNotificationService-f3ecfb.pem",
        "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb.pem?x=1",
        "https://evil.example/sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb.pem",
    ],
)
def test_a_certificate_url_off_the_pinned_host_is_never_fetched(
    key: rsa.RSAPrivateKey, certs: Certificates, cert_url: str
) -> None:
    certs.pems[cert_url] = certs.pems[CERT_URL]
    message = signed(notification(fixture_json("ses/delivery.json")), key, cert_url=cert_url)
    with pytest.raises(SignatureError, match="SigningCertURL"):
        ses.verify(request(message), SECRET, context(certs))
    assert certs.asked == []


def test_a_topic_not_in_the_allow_list_is_refused_before_any_fetch(
    key: rsa.RSAPrivateKey, certs: Certificates
) -> None:
    message = signed(notification(fixture_json("ses/delivery.json"), TopicArn=TOPIC + "-other"), key)
    with pytest.raises(SignatureError, match="topic"):
        ses.verify(request(message), SECRET, context(certs))
    assert certs.asked == []
    # A comma-separated list in the extra works too.
    listed = ProviderSecret(extra={"topic_arns": f"arn:aws:sns:eu-west-1:1:x, {TOPIC}"})
    ses.verify(request(signed(notification(fixture_json("ses/delivery.json")), key)), listed, context(certs))


def test_no_topic_list_is_a_configuration_error(key: rsa.RSAPrivateKey, certs: Certificates) -> None:
    message = signed(notification(fixture_json("ses/delivery.json")), key)
    with pytest.raises(ConfigError, match="topic_arns"):
        ses.verify(request(message), ProviderSecret(), context(certs))


def test_a_certificate_that_is_not_rsa_or_not_pem_is_refused(key: rsa.RSAPrivateKey) -> None:
    message = signed(notification(fixture_json("ses/delivery.json")), key)
    ec_cert = certificate(ec.generate_private_key(ec.SECP256R1()))
    for pem in (ec_cert, b"<html>not a certificate</html>"):
        with pytest.raises(SignatureError, match="certificate"):
            ses.verify(request(message), SECRET, context(Certificates({CERT_URL: pem})))


def test_an_unreachable_certificate_is_transient(key: rsa.RSAPrivateKey) -> None:
    def unreachable(url: str) -> bytes:
        raise TransientError(f"GET {url} failed: connection refused")

    message = signed(notification(fixture_json("ses/delivery.json")), key)
    with pytest.raises(TransientError):
        ses.verify(request(message), SECRET, context(unreachable))


class Gets:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return b"<ConfirmSubscriptionResponse/>"


def test_a_signed_subscription_confirmation_is_confirmed(key: rsa.RSAPrivateKey, certs: Certificates) -> None:
    message = signed(fixture_json("ses/sns-subscription-confirmation.json"), key)
    gets = Gets()

    topic = ses.confirm_subscription(request(message), SECRET, context(certs), http_get=gets)

    assert topic == TOPIC
    assert gets.urls == [message["SubscribeURL"]]
    assert ses.parse(request(message)) == []


def test_an_unverified_or_foreign_confirmation_fetches_nothing(
    key: rsa.RSAPrivateKey, certs: Certificates
) -> None:
    sample = fixture_json("ses/sns-subscription-confirmation.json")
    gets = Gets()
    tampered = signed(sample, key)
    tampered["SubscribeURL"] = "https://evil.example/?Action=ConfirmSubscription"
    foreign_host = signed({**sample, "SubscribeURL": "https://evil.example/?Action=ConfirmSubscription"}, key)
    other_topic = signed(
        {**sample, "SubscribeURL": sample["SubscribeURL"].replace("MyTopic", "OtherTopic")}, key
    )
    for message, error in (
        (tampered, "does not match"),
        (foreign_host, "SubscribeURL"),
        (other_topic, "topic"),
    ):
        with pytest.raises(SignatureError, match=error):
            ses.confirm_subscription(request(message), SECRET, context(certs), http_get=gets)
    with pytest.raises(SignatureError):
        ses.confirm_subscription(
            request(sample), SECRET, context(certs), http_get=gets
        )  # AWS's fake signature
    assert gets.urls == []


def test_confirming_a_notification_is_a_payload_error(key: rsa.RSAPrivateKey, certs: Certificates) -> None:
    message = signed(notification(fixture_json("ses/delivery.json")), key)
    with pytest.raises(PayloadError, match="SubscriptionConfirmation"):
        ses.confirm_subscription(request(message), SECRET, context(certs), http_get=Gets())


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"Type": "Notification", "MessageId": "x", "Message": "not json"}).encode(),
        json.dumps({"Type": "Notification", "MessageId": "x", "Message": "[]"}).encode(),
        json.dumps(
            notification({"notificationType": "Bounce", "mail": {}, "bounce": {"bouncedRecipients": 3}})
        ).encode(),
        json.dumps(
            notification({"notificationType": "Bounce", "mail": {}, "bounce": {"bouncedRecipients": [{}]}})
        ).encode(),
        json.dumps(notification({"notificationType": "Delivery", "mail": [], "delivery": {}})).encode(),
        b"[" * 100_000,
    ],
)
def test_garbage_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        ses.parse(request(body))


def test_garbage_to_verify_is_refused_without_a_crash_or_a_fetch(
    key: rsa.RSAPrivateKey, certs: Certificates
) -> None:
    with pytest.raises(PayloadError):
        ses.verify(request(b"\xff\xfe not json"), SECRET, context(certs))
    broken = signed(notification(fixture_json("ses/delivery.json")), key)
    broken["Message"] = {"an": "object"}  # a field SNS signs, with the wrong type
    with pytest.raises(SignatureError, match="Message"):
        ses.verify(request(broken), SECRET, context(certs))
    assert certs.asked == []
