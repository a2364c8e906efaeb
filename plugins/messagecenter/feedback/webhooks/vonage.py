"""Vonage SMS API delivery receipts: the signed-webhook ``sig`` parameter, and one receipt per request.

Vonage's documented scheme (``Signing Messages``, :mod:`messagecenter.feedback.vonage_signing`, the
same that signs the SMS we send): the sorted parameters but ``sig``, then the MD5 hash with the
signature secret (``md5hash``, the default) or an HMAC under it (extra ``signature_method``: ``md5``,
``sha1``, ``sha256``, ``sha512``). Vonage's libraries compare case-insensitively (HMACs come upper
case). The signed ``timestamp`` parameter must be within ``max_age_seconds`` of now.

Signing is enabled per account by Vonage support. Until it is, a connection with no password and
extra ``allow_unsigned: true`` accepts unsigned receipts (anyone who knows the URL can then forge
them); with a password set, a receipt without ``sig`` is refused.

Parameters come from the query string (GET), a form body, or a JSON body (POST-JSON). Our event id
comes back as ``client-ref`` (set at send), either bare or as ``mc_event_id=<id>``.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Any

from messagecenter.core.errors import ConfigError
from messagecenter.feedback.vonage_signing import METHODS, compute_signature
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
    event_id_of,
    expect_object,
    join_text,
    load_json,
    required_text,
)

log = logging.getLogger(__name__)

NAME = "vonage"

# DLR err-code values (Vonage "Delivery Receipts" guide).
ERROR_NAMES = {
    "0": "Delivered",
    "1": "Unknown",
    "2": "Absent Subscriber - Temporary",
    "3": "Absent Subscriber - Permanent",
    "4": "Call Barred by User",
    "5": "Portability Error",
    "6": "Anti-Spam Rejection",
    "7": "Handset Busy",
    "8": "Network Error",
    "9": "Illegal Number",
    "10": "Illegal Message",
    "11": "Unroutable",
    "12": "Destination Unreachable",
    "13": "Subscriber Age Restriction",
    "14": "Number Blocked by Carrier",
    "15": "Prepaid Insufficient Funds",
    "16": "Gateway Quota Exceeded",
    "50": "Entity Filter",
    "51": "Header Filter",
    "52": "Content Filter",
    "53": "Consent Filter",
    "54": "Regulation Error",
    "99": "General Error",
}
PERMANENT_ERRORS = frozenset({"3", "4", "9"})  # the number is gone, barred by its user, or invalid
TEMPORARY_ERRORS = frozenset({"2", "7", "8"})  # handset off, busy, network trouble
SKIPPED = frozenset({"accepted"})  # the carrier took it: not a delivery yet


def verify(request: WebhookRequest, secret: ProviderSecret, context: VerifyContext = DEFAULT_CONTEXT) -> None:
    """Check the ``sig`` parameter and the signed timestamp (or accept unsigned receipts if so configured)."""
    if not secret.password:
        if secret.flag("allow_unsigned"):
            return
        raise ConfigError(
            f"connection mc_feedback_{NAME} has no signature secret (password); "
            "set extra allow_unsigned: true to accept unsigned receipts"
        )
    method = str(secret.extra.get("signature_method", "md5hash")).lower()
    if method not in METHODS:
        raise ConfigError(
            f"connection mc_feedback_{NAME}: signature_method must be one of {', '.join(METHODS)}"
        )
    params = _params(request)
    signature = params.pop("sig", None)
    if not signature:
        raise SignatureError("missing sig parameter")
    timestamp = params.get("timestamp")
    if not timestamp:
        raise SignatureError("missing timestamp parameter")
    check_age(timestamp, context.clock(), secret.max_age(NAME), "Vonage")
    expected = compute_signature(secret.password, params, method)
    if not hmac.compare_digest(
        expected.encode("ascii"), signature.strip().lower().encode("utf-8", "replace")
    ):
        raise SignatureError("sig does not match")


def parse(request: WebhookRequest) -> list[FeedbackEvent]:
    """The receipt of a verified request (``accepted`` is skipped)."""
    params = _params(request)
    what = "Vonage receipt"
    message_id = required_text(params, "messageId", what)
    status = params.get("status", "").lower()
    if status in SKIPPED:
        return []
    error = params.get("err-code")
    scts = params.get("scts", "")
    common: dict[str, Any] = {
        "provider_message_id": message_id,
        "recipient": params.get("msisdn"),
        "occurred_at": _scts_time(scts),
        "event_id": _client_ref(params.get("client-ref")),
    }
    key = f"{message_id}:{status}:{scts}"
    text = join_text(status or "no status", join_text(error, ERROR_NAMES.get(error or ""), sep=" "))
    if status == "delivered":
        return [FeedbackEvent(NAME, key, FeedbackKind.DELIVERED, text=text, **common)]
    if status in ("expired", "failed", "rejected"):
        return [FeedbackEvent(NAME, key, FeedbackKind.FAILED, severity=_severity(error), text=text, **common)]
    if status == "buffered":  # held by the carrier (handset off): still on its way
        return [
            FeedbackEvent(NAME, key, FeedbackKind.DEFERRED, severity=Severity.TEMPORARY, text=text, **common)
        ]
    log.info("Vonage receipt status %r is not known; kept as ignored", status)
    return [FeedbackEvent(NAME, key, FeedbackKind.IGNORED, text=text, **common)]


def _severity(error: str | None) -> Severity | None:
    if error in PERMANENT_ERRORS:
        return Severity.PERMANENT
    return Severity.TEMPORARY if error in TEMPORARY_ERRORS else None


def _params(request: WebhookRequest) -> dict[str, str]:
    """The receipt's parameters: JSON body, form body, or query string (GET); a repeated name is refused."""
    if request.content_type == "application/json":
        document = expect_object(load_json(request.body, "Vonage body"), "Vonage body")
        items = []
        for name, value in document.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise PayloadError(f"Vonage parameter {name!r} is not a string")
            items.append((name, str(value)))
    elif request.method == "GET":
        items = request.query_items()
    else:
        items = request.form_items()
    params: dict[str, str] = {}
    for name, value in items:
        if name in params:
            raise PayloadError(f"Vonage parameter {name!r} is repeated")
        params[name] = value
    return params


def _scts_time(scts: str) -> datetime | None:
    """``YYMMDDHHMM`` (when the carrier reported, UTC) as a datetime; None if it is not that."""
    if len(scts) != 10 or not scts.isdigit():
        return None
    try:
        return datetime.strptime(scts, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def _client_ref(value: str | None) -> int | None:
    if not value:
        return None
    name, sep, rest = value.partition("=")
    return event_id_of(rest if sep and name.strip() == "mc_event_id" else value)
