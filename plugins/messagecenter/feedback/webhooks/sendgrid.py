"""SendGrid Event Webhook (signed): ECDSA P-256 over the timestamp and the raw body, and its event batches.

The signature (base64 DER) comes in ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
``X-Twilio-Email-Event-Webhook-Timestamp``; the verification key is the one SendGrid shows on the
signed-webhook settings page (base64 DER SubjectPublicKeyInfo), in the connection's extra
``public_key`` or its password. The body is a JSON array of events; custom args are flattened into
each event, so ours comes back as ``mc_event_id``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
    check_age,
    check_size,
    clip,
    epoch_time,
    event_id_of,
    expect_object,
    join_text,
    load_json,
    text_field,
)

log = logging.getLogger(__name__)

NAME = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# Engagement and bookkeeping events: nothing about deliverability.
SKIPPED = frozenset({"processed", "open", "click", "group_resubscribe"})


def verify(request: WebhookRequest, secret: ProviderSecret, context: VerifyContext = DEFAULT_CONTEXT) -> None:
    """Check the ECDSA signature over timestamp + body and the timestamp's age."""
    key = public_key(secret)
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    check_size(request.body)
    check_age(timestamp, context.clock(), secret.max_age(NAME), "SendGrid")
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{SIGNATURE_HEADER} is not base64") from None
    try:
        key.verify(der, timestamp.encode("utf-8") + request.body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("SendGrid signature does not match the body") from None


def public_key(secret: ProviderSecret) -> ec.EllipticCurvePublicKey:
    """The verification key of the connection (extra ``public_key``, else the password)."""
    text = secret.extra.get("public_key") or secret.password
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            f"connection mc_feedback_{NAME} needs the signed-webhook public key (extra public_key)"
        )
    return _load_key(text.strip())


@functools.lru_cache(maxsize=8)
def _load_key(text: str) -> ec.EllipticCurvePublicKey:
    problem = f"connection mc_feedback_{NAME}: the public key is not a base64 DER or PEM P-256 key"
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(problem) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(problem)
    return key


def parse(request: WebhookRequest) -> list[FeedbackEvent]:
    """The delivery events of a verified batch (engagement events are skipped)."""
    batch = load_json(request.body, "SendGrid body")
    if not isinstance(batch, list):
        raise PayloadError("SendGrid body is not a JSON array of events")
    events = []
    for number, item in enumerate(batch):
        found = _event(expect_object(item, f"SendGrid event #{number}"), number)
        if found is not None:
            events.append(found)
    return events


def _event(item: dict[str, Any], number: int) -> FeedbackEvent | None:
    what = f"SendGrid event #{number}"
    name = text_field(item, "event", what)
    if name in SKIPPED:
        return None
    recipient = text_field(item, "email", what)
    sg_message_id = text_field(item, "sg_message_id", what)
    occurred_at = epoch_time(item.get("timestamp"))
    # Older payloads (dropped events among them) may lack sg_event_id: the event's own fields then
    # make a key that is stable across SendGrid's retries.
    event_key = text_field(item, "sg_event_id", what) or ":".join(
        str(item.get(k, "")) for k in ("event", "email", "timestamp", "sg_message_id", "smtp-id")
    )
    common: dict[str, Any] = {
        "provider_message_id": sg_message_id.split(".", 1)[0] if sg_message_id else None,
        "recipient": recipient,
        "occurred_at": occurred_at,
        "event_id": event_id_of(item.get("mc_event_id")),
    }
    reason = text_field(item, "reason", what)
    response = text_field(item, "response", what)
    if name == "delivered":
        return FeedbackEvent(NAME, event_key, FeedbackKind.DELIVERED, text=clip(response), **common)
    if name == "bounce":
        # type "blocked": the receiving server refused for now (reputation, content); "bounce" (or an
        # older payload without type): the address itself.
        severity = Severity.TEMPORARY if item.get("type") == "blocked" else Severity.PERMANENT
        text = join_text(text_field(item, "status", what), reason, sep=" ")
        return FeedbackEvent(NAME, event_key, FeedbackKind.FAILED, severity=severity, text=text, **common)
    if name == "dropped":
        # Never sent (suppression list, invalid address, spam content): the reason says which.
        return FeedbackEvent(NAME, event_key, FeedbackKind.FAILED, text=clip(reason), **common)
    if name == "deferred":
        text = clip(response or reason)
        return FeedbackEvent(
            NAME, event_key, FeedbackKind.DEFERRED, severity=Severity.TEMPORARY, text=text, **common
        )
    if name == "spamreport":
        return FeedbackEvent(NAME, event_key, FeedbackKind.COMPLAINT, **common)
    if name in ("unsubscribe", "group_unsubscribe"):
        return FeedbackEvent(NAME, event_key, FeedbackKind.UNSUBSCRIBE, text=name, **common)
    log.info("SendGrid event type %r is not known; kept as ignored", name)
    return FeedbackEvent(NAME, event_key, FeedbackKind.IGNORED, text=clip(name or "no event type"), **common)
