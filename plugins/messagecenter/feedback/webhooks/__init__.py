"""Provider feedback webhooks: prove who sent a request, then turn its body into feedback events.

One module per provider, each with ``verify(request, secret, context=DEFAULT_CONTEXT)`` and
``parse(request)``; :data:`PROVIDERS` maps the names used in ``POST /api/v1/feedback/{provider}``
to them. The caller always verifies first and parses only what verified::

    provider = PROVIDERS[name]
    provider.verify(request, secret, context)  # SignatureError -> 401/403
    events = provider.parse(request)  # PayloadError -> 400

SES also needs its SNS subscription confirmed once: :func:`ses.confirm_subscription`.
"""

from __future__ import annotations

from messagecenter.feedback.webhooks import mailgun, postmark, sendgrid, ses, twilio, vonage
from messagecenter.feedback.webhooks.base import (
    DEFAULT_CONTEXT,
    MAX_BODY_BYTES,
    CachedFetcher,
    FeedbackEvent,
    FeedbackKind,
    Headers,
    InMemoryReplayGuard,
    PayloadError,
    Provider,
    ProviderSecret,
    ReplayGuard,
    Severity,
    SignatureError,
    VerifyContext,
    WebhookError,
    WebhookRequest,
    fetch_url,
)

PROVIDERS: dict[str, Provider] = {
    "ses": ses,
    "sendgrid": sendgrid,
    "mailgun": mailgun,
    "postmark": postmark,
    "twilio": twilio,
    "vonage": vonage,
}

__all__ = [
    "DEFAULT_CONTEXT",
    "MAX_BODY_BYTES",
    "PROVIDERS",
    "CachedFetcher",
    "FeedbackEvent",
    "FeedbackKind",
    "Headers",
    "InMemoryReplayGuard",
    "PayloadError",
    "Provider",
    "ProviderSecret",
    "ReplayGuard",
    "Severity",
    "SignatureError",
    "VerifyContext",
    "WebhookError",
    "WebhookRequest",
    "fetch_url",
    "mailgun",
    "postmark",
    "sendgrid",
    "ses",
    "twilio",
    "vonage",
]
