"""Postmark webhooks: HTTP Basic credentials (Postmark signs nothing), and one record per request.

The webhook URL configured at Postmark carries ``user:password@``; Postmark sends them as HTTP Basic
auth, compared here in constant time with the connection's login and password. ``RecordType`` says
what the record is; a bounce's ``Type`` (HardBounce, SoftBounce, ...) says how bad it is. Our event
id comes back in the message's ``Metadata`` (``mc_event_id``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Any

from messagecenter.feedback.webhooks.base import (
    DEFAULT_CONTEXT,
    FeedbackEvent,
    FeedbackKind,
    ProviderSecret,
    Severity,
    SignatureError,
    VerifyContext,
    WebhookRequest,
    clip,
    event_id_of,
    expect_object,
    iso_time,
    join_text,
    load_json,
    required_text,
    text_field,
)

log = logging.getLogger(__name__)

NAME = "postmark"
SKIPPED = frozenset({"Open", "Click"})

# Bounce Type -> (kind, severity). Types not listed are failures left to the qualification rules
# (Unknown, Blocked, DMARCPolicy, SMTPApiError, ManuallyDeactivated, TemplateRenderingFailed, ...).
BOUNCE_TYPES: dict[str, tuple[FeedbackKind, Severity | None]] = {
    "HardBounce": (FeedbackKind.FAILED, Severity.PERMANENT),
    "BadEmailAddress": (FeedbackKind.FAILED, Severity.PERMANENT),
    "SoftBounce": (FeedbackKind.FAILED, Severity.TEMPORARY),
    "DnsError": (FeedbackKind.FAILED, Severity.TEMPORARY),
    "Transient": (FeedbackKind.DEFERRED, Severity.TEMPORARY),  # "message delayed": Postmark keeps trying
    "SpamComplaint": (FeedbackKind.COMPLAINT, None),
    "Unsubscribe": (FeedbackKind.UNSUBSCRIBE, None),
    # Mail that came back but says nothing about the address.
    "AutoResponder": (FeedbackKind.IGNORED, None),
    "Subscribe": (FeedbackKind.IGNORED, None),
    "AddressChange": (FeedbackKind.IGNORED, None),
    "OpenRelayTest": (FeedbackKind.IGNORED, None),
    "VirusNotification": (FeedbackKind.IGNORED, None),
    "ChallengeVerification": (FeedbackKind.IGNORED, None),
    "InboundError": (FeedbackKind.IGNORED, None),
}


def verify(request: WebhookRequest, secret: ProviderSecret, context: VerifyContext = DEFAULT_CONTEXT) -> None:
    """Check the HTTP Basic credentials against the connection's login and password."""
    password = secret.require_password(NAME, "the HTTP Basic password of the webhook URL")
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise SignatureError("missing HTTP Basic credentials")
    try:
        given_login, colon, given_password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        raise SignatureError("HTTP Basic credentials are not base64") from None
    # Both comparisons always run, so the timing says nothing about which part was wrong.
    login_ok = hmac.compare_digest(given_login, (secret.login or "").encode("utf-8"))
    password_ok = hmac.compare_digest(given_password, password.encode("utf-8"))
    if not (colon and login_ok and password_ok):
        raise SignatureError("wrong HTTP Basic credentials")


def parse(request: WebhookRequest) -> list[FeedbackEvent]:
    """The event of a verified record (opens and clicks are skipped)."""
    record = expect_object(load_json(request.body, "Postmark body"), "Postmark body")
    what = "Postmark record"
    record_type = text_field(record, "RecordType", what)
    if record_type in SKIPPED:
        return []
    message_id = text_field(record, "MessageID", what)
    metadata = record.get("Metadata")
    common: dict[str, Any] = {
        "provider_message_id": message_id,
        "event_id": event_id_of(metadata.get("mc_event_id")) if isinstance(metadata, dict) else None,
    }
    if record_type == "Delivery":
        delivered_at = text_field(record, "DeliveredAt", what)
        recipient = text_field(record, "Recipient", what)
        key = f"{required_text(record, 'MessageID', what)}:Delivery:{recipient}:{delivered_at}"
        text = clip(text_field(record, "Details", what))
        return [
            FeedbackEvent(
                NAME,
                key,
                FeedbackKind.DELIVERED,
                recipient=recipient,
                text=text,
                occurred_at=iso_time(delivered_at),
                **common,
            )
        ]
    if record_type in ("Bounce", "SpamComplaint"):
        bounce_type = text_field(record, "Type", what)
        kind, severity = BOUNCE_TYPES.get(bounce_type or "", (FeedbackKind.FAILED, None))
        if record_type == "SpamComplaint":
            kind, severity = FeedbackKind.COMPLAINT, None
        details = text_field(record, "Details", what) or text_field(record, "Description", what)
        return [
            FeedbackEvent(
                NAME,
                required_text(record, "ID", what),
                kind,
                recipient=text_field(record, "Email", what),
                severity=severity,
                text=join_text(bounce_type, details),
                occurred_at=iso_time(record.get("BouncedAt")),
                **common,
            )
        ]
    if record_type == "SubscriptionChange":
        return _subscription_change(record, common)
    log.info("Postmark record type %r is not known; kept as ignored", record_type)
    key = f"{message_id}:{record_type}"
    return [
        FeedbackEvent(NAME, key, FeedbackKind.IGNORED, text=clip(record_type or "no RecordType"), **common)
    ]


def _subscription_change(record: dict[str, Any], common: dict[str, Any]) -> list[FeedbackEvent]:
    """An unsubscribe when sending is suppressed by hand or by the recipient; bounces and complaints
    already came as their own records, and a reactivation changes nothing here."""
    what = "Postmark SubscriptionChange"
    recipient = text_field(record, "Recipient", what)
    changed_at = text_field(record, "ChangedAt", what)
    reason = text_field(record, "SuppressionReason", what)
    suppressed = record.get("SuppressSending") is True
    kind = FeedbackKind.UNSUBSCRIBE if suppressed and reason == "ManualSuppression" else FeedbackKind.IGNORED
    key = f"{text_field(record, 'MessageID', what)}:SubscriptionChange:{recipient}:{changed_at}"
    text = join_text(
        "suppressed" if suppressed else "reactivated", reason, text_field(record, "Origin", what)
    )
    return [
        FeedbackEvent(
            NAME, key, kind, recipient=recipient, text=text, occurred_at=iso_time(changed_at), **common
        )
    ]
