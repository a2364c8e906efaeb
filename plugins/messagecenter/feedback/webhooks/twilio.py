"""Twilio SMS status callbacks: ``X-Twilio-Signature``, and one status per request.

The signature is the base64 HMAC-SHA1, under the account's auth token (the connection's password),
of the full URL Twilio called followed by each POST parameter's name and value, sorted by name.
A JSON body is covered instead by a ``bodySHA256`` query parameter (hex SHA-256 of the body). A
request carrying ``X-Twilio-Webhooks-Signature-Settings`` names its algorithm (``HMAC_SHA256``
too). As in Twilio's own validator, the URL is tried with and without its default port.

Twilio sends no callback for the initial status and does not guarantee order; intermediate statuses
(queued, sending, sent, ...) are skipped, the caller keeps final states final. Our event id comes
back as the ``mc_event_id`` query parameter of the ``StatusCallback`` URL set at send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
    check_size,
    event_id_of,
    expect_object,
    join_text,
    load_json,
    required_text,
    text_field,
)

log = logging.getLogger(__name__)

NAME = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
ALGORITHMS: dict[str, Callable[[], Any]] = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}

SKIPPED = frozenset(
    {"queued", "accepted", "scheduled", "sending", "sent", "receiving", "received", "canceled"}
)
# Error codes whose meaning is clear enough for a hint (Twilio error dictionary); the others are left
# to the qualification rules, which see the code in the text.
PERMANENT_ERRORS = frozenset({"21211", "21614", "30005", "30006"})  # invalid/unknown/landline numbers
TEMPORARY_ERRORS = frozenset({"30001", "30003"})  # queue overflow, handset unreachable
UNSUBSCRIBED_ERRORS = frozenset({"21610"})  # the recipient replied STOP


def verify(request: WebhookRequest, secret: ProviderSecret, context: VerifyContext = DEFAULT_CONTEXT) -> None:
    """Check ``X-Twilio-Signature`` over the URL and the POST parameters (or the body's hash)."""
    token = secret.require_password(NAME, "the account auth token")
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    digest = ALGORITHMS.get(_algorithm(request.headers.get(SETTINGS_HEADER, "")))
    if digest is None:
        raise SignatureError(f"{SETTINGS_HEADER} names an algorithm this code does not know")
    check_size(request.body)
    body_hashes = [v for k, v in request.query_items() if k == "bodySHA256"]
    if body_hashes:
        body_hash = hashlib.sha256(request.body).hexdigest()
        if len(body_hashes) != 1 or not hmac.compare_digest(body_hash, body_hashes[0].lower()):
            raise SignatureError("bodySHA256 does not match the body")
        params: list[tuple[str, str]] = []
    elif request.body and request.content_type != "application/x-www-form-urlencoded":
        raise SignatureError("a body that is not a form needs bodySHA256 in the URL, or it is not signed")
    else:
        params = request.form_items() if request.method == "POST" else []
    for url in _url_variants(request.url):
        expected = compute_signature(token, url, params, digest)
        if hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace")):
            return
    raise SignatureError(f"{SIGNATURE_HEADER} does not match")


def compute_signature(
    token: str, url: str, params: list[tuple[str, str]], digest: Callable[[], Any] = hashlib.sha1
) -> str:
    """Twilio's signature: base64 HMAC of the URL then, by sorted name, each name and its sorted values."""
    data = url
    for name in sorted({name for name, _ in params}):
        for value in sorted({v for n, v in params if n == name}):
            data += name + value
    mac = hmac.new(token.encode("utf-8"), data.encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def parse(request: WebhookRequest) -> list[FeedbackEvent]:
    """The status of a verified callback (intermediate statuses are skipped)."""
    params = _params(request)
    what = "Twilio callback"
    sid = required_text(params, "MessageSid", what)
    status = (
        text_field(params, "MessageStatus", what) or text_field(params, "SmsStatus", what) or ""
    ).lower()
    if status in SKIPPED:
        return []
    error = text_field(params, "ErrorCode", what)
    common: dict[str, Any] = {
        "provider_message_id": sid,
        "recipient": text_field(params, "To", what),
        "event_id": next((event_id_of(v) for k, v in request.query_items() if k == "mc_event_id"), None),
    }
    key = f"{sid}:{status}"
    if status in ("delivered", "read"):
        return [FeedbackEvent(NAME, key, FeedbackKind.DELIVERED, text=status, **common)]
    if status in ("undelivered", "failed"):
        text = join_text(status, join_text(error, text_field(params, "ErrorMessage", what), sep=" "))
        if error in UNSUBSCRIBED_ERRORS:
            return [FeedbackEvent(NAME, key, FeedbackKind.UNSUBSCRIBE, text=text, **common)]
        return [FeedbackEvent(NAME, key, FeedbackKind.FAILED, severity=_severity(error), text=text, **common)]
    log.info("Twilio message status %r is not known; kept as ignored", status)
    return [
        FeedbackEvent(NAME, key, FeedbackKind.IGNORED, text=join_text(status or "no status", error), **common)
    ]


def _severity(error: str | None) -> Severity | None:
    if error in PERMANENT_ERRORS:
        return Severity.PERMANENT
    return Severity.TEMPORARY if error in TEMPORARY_ERRORS else None


def _params(request: WebhookRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        return expect_object(load_json(request.body, "Twilio body"), "Twilio body")
    params: dict[str, Any] = {}
    for name, value in request.form_items() or request.query_items():
        params.setdefault(name, value)
    if not params:
        raise PayloadError("Twilio callback has no parameters")
    return params


def _algorithm(settings: str) -> str:
    """The algorithm named in the signature-settings header (``key=...,algorithm=HMAC_SHA256``)."""
    for part in settings.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip().lower() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with its default port (Twilio signs either)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SignatureError("the request URL has an invalid port") from None
    bare = urlunsplit(parts._replace(netloc=host))
    ported = urlunsplit(parts._replace(netloc=f"{host}:{port}"))
    return list(dict.fromkeys([url, bare, ported]))
