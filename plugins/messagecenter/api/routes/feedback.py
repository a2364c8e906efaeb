"""``/api/v1/feedback/{provider}``: provider webhooks (bounces, complaints, receipts) applied to the logs.

Not bearer-authenticated: each provider proves itself with its own scheme, checked with the secret of
the Airflow connection ``mc_feedback_<provider>`` before anything of the body is used. Then the
events are applied as every other feedback is (:func:`messagecenter.feedback.apply.apply_feedback`):
a replayed request finds its events already seen and changes nothing.

Answers: 200 with the counts; 400 a body that is not what the provider sends; 401 not proven to come
from the provider (nothing said about why: the log says it); 404 an unknown provider; 413 too big;
503 a connection missing or incomplete, a certificate that could not be fetched, or the database
down, so that the provider retries later.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from messagecenter.airflow.connections import get_connection
from messagecenter.api.deps import ApiState, StateDep, read_body
from messagecenter.api.models import ErrorMessage, FeedbackReceived
from messagecenter.core.errors import ConfigError, TransientError
from messagecenter.db.queries import query
from messagecenter.feedback import rules
from messagecenter.feedback.apply import Feedback, Kind, apply_feedback
from messagecenter.feedback.webhooks import (
    PROVIDERS,
    FeedbackEvent,
    FeedbackKind,
    Headers,
    PayloadError,
    ProviderSecret,
    Severity,
    SignatureError,
    VerifyContext,
    WebhookRequest,
    ses,
)
from messagecenter.feedback.webhooks.base import load_json

log = logging.getLogger(__name__)

router = APIRouter(prefix="/feedback", tags=["feedback"])

CONN_PREFIX = "mc_feedback_"
REPLAY_SOURCE = "mailgun-token"  # mc.feedback_seen's namespace of Mailgun's single-use tokens
MAX_KEY_CHARS = 500  # longer ids are hashed: they are keys of btree indexes
_KINDS: dict[FeedbackKind, Kind] = {
    FeedbackKind.DELIVERED: "delivered",
    FeedbackKind.FAILED: "failed",
    FeedbackKind.DEFERRED: "deferred",
    FeedbackKind.COMPLAINT: "complaint",
    FeedbackKind.UNSUBSCRIBE: "unsubscribe",
    FeedbackKind.IGNORED: "ignored",
}
_SEVERITIES: dict[Severity, Literal["permanent", "temporary"]] = {
    Severity.PERMANENT: "permanent",
    Severity.TEMPORARY: "temporary",
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorMessage, "description": "The body is not what this provider sends"},
    401: {
        "model": ErrorMessage,
        "description": "Not proven to come from the provider (signature, credentials)",
    },
    404: {"model": ErrorMessage, "description": "No webhook for this provider"},
    413: {"model": ErrorMessage, "description": "The body is larger than MC_WEBHOOK_MAX_BYTES"},
    503: {
        "model": ErrorMessage,
        "description": "Connection mc_feedback_<provider> missing or incomplete, a certificate not "
        "fetched, or the execution database unavailable: the provider retries later",
    },
}


class DatabaseReplayGuard:
    """Mailgun's single-use tokens, remembered in ``mc.feedback_seen``: the first use wins.

    Verification runs before any connection is taken (a forger must not hold one), so it only notes
    the tokens here; :meth:`consume` records them in the transaction that applies the request, and a
    token already recorded refuses it. A request that fails after verification rolls back with its
    token, so the provider's retry of the same request is still accepted.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []

    def first_use(self, key: str, expires_at: float) -> bool:
        key = _clean(key, MAX_KEY_CHARS) or ""
        if key in self.keys:
            return False
        self.keys.append(key)
        return True

    def consume(self, conn: psycopg.Connection[Any]) -> None:
        """Record the noted tokens; :class:`SignatureError` if one was used before (a replay)."""
        if not self.keys:
            return
        fresh = conn.execute(query("mark_feedback_seen"), {"provider": REPLAY_SOURCE, "keys": self.keys})
        if len(fresh.fetchall()) < len(self.keys):
            raise SignatureError("Mailgun token was already used (replayed request)")


def provider_secret(provider: str) -> ProviderSecret:
    """The connection ``mc_feedback_<provider>`` as the verification schemes read it."""
    conn = get_connection(f"{CONN_PREFIX}{provider}")
    extra = conn.extra_dejson if conn.extra else {}
    return ProviderSecret(
        password=conn.password or None,
        login=conn.login or None,
        extra=extra if isinstance(extra, dict) else {},
    )


def _first(value: str | None) -> str | None:
    """The first of a comma-separated forwarded header (the proxy nearest the client adds first)."""
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    return first or None


def public_url(request: Request) -> str:
    """The URL the provider called, as seen in front of any proxy (Twilio signs it)."""
    scheme = _first(request.headers.get("x-forwarded-proto")) or request.url.scheme
    host = (
        _first(request.headers.get("x-forwarded-host")) or request.headers.get("host") or request.url.netloc
    )
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    query_string = request.scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://{host}{path}" + (f"?{query_string}" if query_string else "")


def configured_url(request: Request, base: str) -> str | None:
    """The same URL under ``MC_PUBLIC_URL`` (a proxy that strips a path prefix), or None."""
    if not base:
        return None
    path, root = request.scope["path"], request.scope.get("root_path", "")
    relative = path[len(root) :] if root and path.startswith(root) else path
    query_string = request.scope.get("query_string", b"").decode("latin-1")
    return f"{base.rstrip('/')}{relative}" + (f"?{query_string}" if query_string else "")


def _clean(text: str | None, limit: int | None = None) -> str | None:
    """Text PostgreSQL can store (no NUL, no lone surrogate from a JSON escape); an id longer than
    ``limit`` is replaced by its hash."""
    if text is None:
        return None
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    if limit is not None and len(text) > limit:
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text


def as_feedback(event: FeedbackEvent) -> Feedback:
    """A provider's event as the feedback every source hands to ``apply_feedback``."""
    return Feedback(
        source=event.provider,
        kind=_KINDS[event.kind],
        event_id=event.event_id,
        message_id=_clean(event.provider_message_id, MAX_KEY_CHARS),
        text=_clean(event.text),
        severity=_SEVERITIES.get(event.severity) if event.severity is not None else None,
        event_key=_clean(event.provider_event_id, MAX_KEY_CHARS),
        at=event.occurred_at,
    )


def _verify(
    provider: str,
    webhook: WebhookRequest,
    secret: ProviderSecret,
    context: VerifyContext,
    alternative_url: str | None,
) -> None:
    try:
        PROVIDERS[provider].verify(webhook, secret, context)
    except SignatureError:
        # Twilio signs the URL it called: behind a proxy that rewrites the path, that is MC_PUBLIC_URL's.
        if provider != "twilio" or not alternative_url or alternative_url == webhook.url:
            raise
        moved = WebhookRequest(webhook.method, alternative_url, webhook.headers, webhook.body, webhook.form)
        PROVIDERS[provider].verify(moved, secret, context)


def _receive(
    state: ApiState, provider: str, webhook: WebhookRequest, alternative_url: str | None
) -> FeedbackReceived:
    """Verify, parse and apply one request (in a worker thread: connection lookups and fetches block)."""
    secret = provider_secret(provider)
    guard = DatabaseReplayGuard()
    tools = state.webhooks
    context = VerifyContext(clock=tools.clock, replay_guard=guard, fetch_certificate=tools.fetch_certificate)
    if provider == "ses" and _sns_type(webhook) == "SubscriptionConfirmation":
        topic = ses.confirm_subscription(webhook, secret, context, http_get=tools.http_get)
        return FeedbackReceived(provider=provider, confirmed_topic=topic)
    _verify(provider, webhook, secret, context, alternative_url)
    try:
        events = PROVIDERS[provider].parse(webhook)
    except PayloadError:
        raise
    except Exception as exc:  # whatever a signed but odd body does to a parser, it is the body's fault
        log.exception("Feedback from %s: body not understood", provider)
        raise PayloadError(f"{provider} body not understood ({type(exc).__name__})") from exc
    items = [as_feedback(event) for event in events]
    with state.pool.connection() as conn, conn.transaction():
        guard.consume(conn)
        counts = apply_feedback(conn, items, qualify=rules.qualifier(conn), rules=state.settings.feedback)
    return FeedbackReceived(provider=provider, events=len(events), **counts.as_dict())


def _sns_type(webhook: WebhookRequest) -> str | None:
    """The SNS message type the body claims (verification then checks the signature over it)."""
    try:
        envelope = load_json(webhook.body, "SNS body")
    except PayloadError:
        return None  # verification says what is wrong with it
    kind = envelope.get("Type") if isinstance(envelope, dict) else None
    return kind if isinstance(kind, str) else None


@router.post(
    "/{provider}",
    responses=RESPONSES,
    summary="Receive a provider's delivery feedback (ses, sendgrid, mailgun, postmark, twilio, vonage)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The provider's own payload, signed with its scheme",
            "content": {
                "application/json": {"schema": {}},
                "application/x-www-form-urlencoded": {"schema": {}},
                "text/plain": {"schema": {}},
            },
        }
    },
)
async def receive_feedback(provider: str, request: Request, state: StateDep) -> FeedbackReceived:
    if provider not in PROVIDERS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no feedback webhook for provider {provider[:40]!r}")
    body = await read_body(request, state.settings.feedback.max_webhook_bytes)
    webhook = WebhookRequest(request.method, public_url(request), Headers(request.headers.items()), body)
    alternative = configured_url(request, state.settings.feedback.public_url)
    try:
        return await run_in_threadpool(_receive, state, provider, webhook, alternative)
    except SignatureError as exc:
        log.warning("Feedback from %s refused: %s", provider, exc)
        # Postmark authenticates with HTTP Basic: say so; the others sign, and have no challenge to name.
        challenge = (
            {"WWW-Authenticate": f'Basic realm="{CONN_PREFIX}{provider}"'} if provider == "postmark" else None
        )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"request not verified as coming from {provider}", headers=challenge
        ) from None
    except PayloadError as exc:
        log.warning("Feedback from %s refused: %s", provider, exc)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except ConfigError as exc:
        log.error("Feedback from %s not handled, configuration: %s", provider, exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the {provider} webhook is not configured (connection {CONN_PREFIX}{provider})",
        ) from None
    except TransientError as exc:
        log.warning("Feedback from %s not handled, retry later: %s", provider, exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "try again later") from None
