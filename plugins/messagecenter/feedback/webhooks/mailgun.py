"""Mailgun webhooks: an HMAC in the body, single-use tokens, and one event per request.

The JSON body carries ``signature: {timestamp, token, signature}``, the signature being the hex
HMAC-SHA256 of ``timestamp + token`` under the webhook signing key (the connection's password). A
token is accepted once (:class:`~messagecenter.feedback.webhooks.base.ReplayGuard`) and only within
``max_age_seconds`` (default 15 minutes) of its timestamp. Our event id comes back in the message's
user variables (``v:mc_event_id`` at send).
"""

from __future__ import annotations

import hashlib
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
    check_age,
    clip,
    epoch_time,
    event_id_of,
    expect_object,
    join_text,
    load_json,
    required_text,
    text_field,
)

log = logging.getLogger(__name__)

NAME = "mailgun"
SKIPPED = frozenset({"accepted", "opened", "clicked", "stored", "list_member_uploaded"})


def verify(request: WebhookRequest, secret: ProviderSecret, context: VerifyContext = DEFAULT_CONTEXT) -> None:
    """Check the HMAC, the timestamp's age and that the token was never used before."""
    key = secret.require_password(NAME, "the webhook signing key")
    max_age = secret.max_age(NAME)
    document = expect_object(load_json(request.body, "Mailgun body"), "Mailgun body")
    signed = document.get("signature")
    if not isinstance(signed, dict):
        raise SignatureError("Mailgun body has no signature object")
    parts = [signed.get(name) for name in ("timestamp", "token", "signature")]
    if not all(isinstance(part, str | int) and str(part) for part in parts):
        raise SignatureError("Mailgun signature lacks timestamp, token or signature")
    timestamp, token, signature = (str(part) for part in parts)
    now = context.clock()
    moment = check_age(timestamp, now, max_age, "Mailgun")
    expected = hmac.new(key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise SignatureError("Mailgun signature does not match")
    # Only a genuine token is recorded, so a forger cannot burn the tokens of requests to come.
    if not context.replay_guard.first_use(f"{NAME}:{token}", moment + max_age):
        raise SignatureError("Mailgun token was already used (replayed request)")


def parse(request: WebhookRequest) -> list[FeedbackEvent]:
    """The event of a verified request (engagement events are skipped)."""
    document = expect_object(load_json(request.body, "Mailgun body"), "Mailgun body")
    data = expect_object(document.get("event-data"), "Mailgun event-data")
    what = "Mailgun event-data"
    name = text_field(data, "event", what)
    if name in SKIPPED:
        return []
    message = expect_object(data.get("message") or {}, "Mailgun message")
    headers = expect_object(message.get("headers") or {}, "Mailgun message headers")
    message_id = text_field(headers, "message-id", "Mailgun message headers")
    variables = data.get("user-variables")  # an object, or [] when the message has none
    common: dict[str, Any] = {
        "provider_message_id": message_id.strip().strip("<>") if message_id else None,
        "recipient": text_field(data, "recipient", what),
        "occurred_at": epoch_time(data.get("timestamp")),
        "event_id": event_id_of(variables.get("mc_event_id")) if isinstance(variables, dict) else None,
    }
    key = required_text(data, "id", what)
    if name == "delivered":
        return [FeedbackEvent(NAME, key, FeedbackKind.DELIVERED, text=_status_text(data), **common)]
    if name == "failed":
        # temporary: Mailgun retries on its own schedule, so this is a deferral, not a failure yet.
        if data.get("severity") == "temporary":
            kind, severity = FeedbackKind.DEFERRED, Severity.TEMPORARY
        elif data.get("severity") == "permanent":
            kind, severity = FeedbackKind.FAILED, Severity.PERMANENT
        else:
            kind, severity = FeedbackKind.FAILED, None
        text = join_text(_status_text(data), text_field(data, "reason", what), sep=" | ")
        return [FeedbackEvent(NAME, key, kind, severity=severity, text=text, **common)]
    if name == "rejected":  # Mailgun refused to send it at all
        reject = data.get("reject")
        reason = text_field(reject, "reason", "Mailgun reject") if isinstance(reject, dict) else None
        return [FeedbackEvent(NAME, key, FeedbackKind.FAILED, text=clip(reason or "rejected"), **common)]
    if name == "complained":
        return [FeedbackEvent(NAME, key, FeedbackKind.COMPLAINT, **common)]
    if name == "unsubscribed":
        return [FeedbackEvent(NAME, key, FeedbackKind.UNSUBSCRIBE, **common)]
    log.info("Mailgun event type %r is not known; kept as ignored", name)
    return [FeedbackEvent(NAME, key, FeedbackKind.IGNORED, text=clip(name or "no event type"), **common)]


def _status_text(data: dict[str, Any]) -> str | None:
    """``"550 5.5.0 Requested action not taken ..."``: the SMTP code and the server's text."""
    status = data.get("delivery-status")
    if not isinstance(status, dict):
        return None
    what = "Mailgun delivery-status"
    text = text_field(status, "message", what) or text_field(status, "description", what)
    return join_text(text_field(status, "code", what), text, sep=" ")
