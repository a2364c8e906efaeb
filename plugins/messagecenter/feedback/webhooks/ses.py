"""Amazon SES notifications delivered by SNS over HTTPS: signature, subscription, and the SES events.

SNS signs a canonical ``Key\\nValue\\n`` string of the message's fields with the key of a certificate
it publishes; ``SignatureVersion`` 1 is SHA1withRSA, 2 is SHA256withRSA. The certificate URL comes
in the message itself, so it is trusted only on AWS's own host (``sns.<region>.amazonaws.com``, path
``/SimpleNotificationService-<hex>.pem``, HTTPS); the topic must be one the connection lists
(extra ``topic_arns``), checked before anything is fetched. Raw message delivery must stay off: a raw
SES document carries no signature and is refused.

A ``SubscriptionConfirmation`` is answered with :func:`confirm_subscription`, which verifies the
message first and only then GETs its ``SubscribeURL`` (same pinned host).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from messagecenter.core.errors import ConfigError
from messagecenter.feedback.webhooks.base import (
    DEFAULT_CONTEXT,
    FeedbackEvent,
    FeedbackKind,
    PayloadError,
    ProviderSecret,
    Severity,
    SignatureError,
    VerifyContext,
    WebhookRequest,
    clip,
    event_id_of,
    expect_object,
    fetch_url,
    iso_time,
    join_text,
    load_json,
    required_text,
    text_field,
)

log = logging.getLogger(__name__)

NAME = "ses"
EVENT_ID_HEADER = "x-mc-event-id"  # the header our SMTP transport sets, echoed when SES includes headers
EVENT_ID_TAG = "mc_event_id"  # or an SES message tag of that name (event publishing)

CERT_URL = re.compile(
    r"https://sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/SimpleNotificationService-[0-9a-f]+\.pem"
)
SUBSCRIBE_URL = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/\?[^#\s]+")

# The fields SNS signs, in the order it signs them; Subject only when the message has one.
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
OPTIONAL_FIELDS = frozenset({"Subject"})
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# Event types that say nothing about deliverability.
SKIPPED = frozenset({"Send", "Open", "Click", "Subscription"})


def verify(request: WebhookRequest, secret: ProviderSecret, context: VerifyContext = DEFAULT_CONTEXT) -> None:
    """Check the topic, the certificate URL and the SNS signature; :class:`SignatureError` if any fails."""
    allowed = _topic_arns(secret)
    envelope = _envelope(request)
    kind, topic, version = (envelope.get(name) for name in ("Type", "TopicArn", "SignatureVersion"))
    if not isinstance(kind, str) or kind not in SIGNED_FIELDS:
        raise SignatureError(f"SNS message type {str(kind)[:40]!r} is not one SNS signs")
    if not isinstance(topic, str) or topic not in allowed:
        raise SignatureError(f"SNS topic {str(topic)[:200]!r} is not in the connection's topic_arns")
    if not isinstance(version, str) or version not in HASHES:
        raise SignatureError(f"SNS SignatureVersion {str(version)[:10]!r} is not 1 or 2")
    signature = envelope.get("Signature")
    cert_url = envelope.get("SigningCertURL")
    if not isinstance(signature, str) or not signature or not isinstance(cert_url, str):
        raise SignatureError("SNS message has no Signature or SigningCertURL")
    if not CERT_URL.fullmatch(cert_url):
        raise SignatureError(
            f"SNS SigningCertURL {cert_url[:200]!r} is not an https sns.<region>.amazonaws.com URL"
        )
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("SNS Signature is not base64") from None
    signed = string_to_sign(envelope)  # before any fetch: a malformed message costs no request
    key = _public_key(context.fetch_certificate(cert_url), cert_url)
    try:
        key.verify(raw_signature, signed, padding.PKCS1v15(), HASHES[version]())
    except InvalidSignature:
        raise SignatureError("SNS signature does not match the message") from None


def string_to_sign(envelope: dict[str, Any]) -> bytes:
    """The canonical text SNS signs: ``Key\\nValue\\n`` for each signed field present, in order."""
    lines: list[str] = []
    for name in SIGNED_FIELDS[envelope["Type"]]:
        value = envelope.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise SignatureError(f"SNS message field {name} is missing or not a string")
        lines += [name, value]
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse(request: WebhookRequest) -> list[FeedbackEvent]:
    """The SES events of a verified ``Notification``; confirmations carry none."""
    envelope = _envelope(request)
    if envelope.get("Type") != "Notification":
        return []
    sns_id = required_text(envelope, "MessageId", "SNS message")
    message = expect_object(
        load_json(required_text(envelope, "Message", "SNS message"), "SNS Message"), "SNS Message"
    )
    sent_at = iso_time(envelope.get("Timestamp"))
    event_type = text_field(message, "eventType", "SES event") or text_field(
        message, "notificationType", "SES event"
    )
    mail = expect_object(message.get("mail") or {}, "SES mail")
    common: dict[str, Any] = {
        "provider_message_id": text_field(mail, "messageId", "SES mail"),
        "event_id": _event_id(mail),
    }

    def event(recipient: str | None, kind: FeedbackKind, **fields: Any) -> FeedbackEvent:
        fields.setdefault("occurred_at", sent_at)
        return FeedbackEvent(
            NAME, f"{sns_id}/{recipient or ''}", kind, recipient=recipient, **common, **fields
        )

    if event_type == "Bounce":
        bounce = expect_object(message.get("bounce"), "SES bounce")
        bounce_type = text_field(bounce, "bounceType", "SES bounce")
        severity = {"Permanent": Severity.PERMANENT, "Transient": Severity.TEMPORARY}.get(bounce_type or "")
        label = "/".join(p for p in (bounce_type, text_field(bounce, "bounceSubType", "SES bounce")) if p)
        at = iso_time(bounce.get("timestamp")) or sent_at
        return [
            event(
                address,
                FeedbackKind.FAILED,
                severity=severity,
                text=join_text(label, _diagnostic(entry)),
                occurred_at=at,
            )
            for address, entry in _recipients(bounce, "bouncedRecipients")
        ]
    if event_type == "Complaint":
        complaint = expect_object(message.get("complaint"), "SES complaint")
        text = clip(text_field(complaint, "complaintFeedbackType", "SES complaint"))
        at = iso_time(complaint.get("timestamp")) or sent_at
        return [
            event(address, FeedbackKind.COMPLAINT, text=text, occurred_at=at)
            for address, _ in _recipients(complaint, "complainedRecipients")
        ]
    if event_type == "Delivery":
        delivery = expect_object(message.get("delivery"), "SES delivery")
        text = clip(text_field(delivery, "smtpResponse", "SES delivery"))
        at = iso_time(delivery.get("timestamp")) or sent_at
        return [
            event(address, FeedbackKind.DELIVERED, text=text, occurred_at=at)
            for address in _addresses(delivery.get("recipients"), "SES delivery recipients")
        ]
    if event_type == "DeliveryDelay":
        delay = expect_object(message.get("deliveryDelay"), "SES deliveryDelay")
        delay_type = text_field(delay, "delayType", "SES deliveryDelay")
        at = iso_time(delay.get("timestamp")) or sent_at
        return [
            event(
                address,
                FeedbackKind.DEFERRED,
                severity=Severity.TEMPORARY,
                text=join_text(delay_type, _diagnostic(entry)),
                occurred_at=at,
            )
            for address, entry in _recipients(delay, "delayedRecipients")
        ]
    if event_type in ("Reject", "RenderingFailure"):
        # SES refused the whole message (virus, template error): nothing is said about the addresses.
        detail = expect_object(message.get("reject") or message.get("failure") or {}, f"SES {event_type}")
        text = join_text(
            event_type, text_field(detail, "reason", "SES") or text_field(detail, "errorMessage", "SES")
        )
        destinations: list[str | None] = [*_addresses(mail.get("destination") or [], "SES mail destination")]
        return [event(address, FeedbackKind.FAILED, text=text) for address in destinations or [None]]
    if event_type in SKIPPED:
        return []
    log.info("SES event type %r is not known; kept as ignored", event_type)
    return [event(None, FeedbackKind.IGNORED, text=clip(event_type or "no event type"))]


def subscribe_url(request: WebhookRequest) -> str:
    """The ``SubscribeURL`` of a ``SubscriptionConfirmation``, once checked to be on the pinned SNS host."""
    envelope = _envelope(request)
    if envelope.get("Type") != "SubscriptionConfirmation":
        raise PayloadError("not an SNS SubscriptionConfirmation")
    url = required_text(envelope, "SubscribeURL", "SNS SubscriptionConfirmation")
    if not SUBSCRIBE_URL.fullmatch(url):
        raise SignatureError(f"SNS SubscribeURL {url[:200]!r} is not an https sns.<region>.amazonaws.com URL")
    query = parse_qs(urlsplit(url).query)
    if query.get("Action") != ["ConfirmSubscription"] or query.get("TopicArn") != [envelope.get("TopicArn")]:
        raise SignatureError("SNS SubscribeURL does not confirm this message's topic")
    return url


def confirm_subscription(
    request: WebhookRequest,
    secret: ProviderSecret,
    context: VerifyContext = DEFAULT_CONTEXT,
    http_get: Callable[[str], bytes] = fetch_url,
) -> str:
    """Verify a ``SubscriptionConfirmation``, then confirm it by GETting its ``SubscribeURL``.

    :returns: the topic ARN now subscribed.
    :raises SignatureError: the message or its URL is not trusted (nothing is fetched).
    :raises TransientError: the confirmation GET failed; SNS sends the confirmation again.
    """
    verify(request, secret, context)
    url = subscribe_url(request)
    http_get(url)
    topic = str(_envelope(request)["TopicArn"])
    log.info("SNS subscription to %s confirmed", topic)
    return topic


def _topic_arns(secret: ProviderSecret) -> frozenset[str]:
    value = secret.extra.get("topic_arns")
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"connection mc_feedback_{NAME} needs extra topic_arns: the SNS topics to accept")
    return frozenset(value)


def _envelope(request: WebhookRequest) -> dict[str, Any]:
    return expect_object(load_json(request.body, "SNS body"), "SNS body")


def _public_key(pem: bytes, url: str) -> rsa.RSAPublicKey:
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise SignatureError(f"SNS signing certificate at {url} is not a PEM certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError(f"SNS signing certificate at {url} does not hold an RSA key")
    return key


def _recipients(section: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    entries = section.get(key)
    if not isinstance(entries, list):
        raise PayloadError(f"SES {key} is not a list")
    found = []
    for entry in entries:
        entry = expect_object(entry, f"SES {key} entry")
        found.append((required_text(entry, "emailAddress", f"SES {key} entry"), entry))
    return found


def _addresses(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PayloadError(f"{what} is not a list of addresses")
    return list(value)


def _diagnostic(entry: dict[str, Any]) -> str | None:
    """A recipient's SMTP diagnostic, else its enhanced status code."""
    what = "SES recipient"
    return text_field(entry, "diagnosticCode", what) or text_field(entry, "status", what)


def _event_id(mail: dict[str, Any]) -> int | None:
    tags = mail.get("tags")
    if isinstance(tags, dict) and isinstance(tags.get(EVENT_ID_TAG), list) and tags[EVENT_ID_TAG]:
        found = event_id_of(tags[EVENT_ID_TAG][0])
        if found is not None:
            return found
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and str(header.get("name", "")).lower() == EVENT_ID_HEADER:
                return event_id_of(header.get("value"))
    return None
