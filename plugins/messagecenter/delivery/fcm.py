"""Android (and iOS through Firebase) push over Firebase Cloud Messaging's HTTP v1 API.

One ``POST {base_url}/v1/projects/{project_id}/messages:send`` per message, authorised by an OAuth2
access token of a Google service account (``google-auth``). The token is shared by every transport
of the process that uses the same service account: fetched once, renewed before it expires, and
renewed once more if FCM refuses it mid-run (a 401 that is not FCM's ``THIRD_PARTY_AUTH_ERROR``),
so an expiry loses no message.

FCM's documented errors decide the outcome: ``UNREGISTERED`` (the token is dead: Failed, and the
address goes into quarantine at once), ``INVALID_ARGUMENT`` and ``SENDER_ID_MISMATCH`` (Failed, that
event alone), ``QUOTA_EXCEEDED``, ``UNAVAILABLE``, ``INTERNAL`` and ``THIRD_PARTY_AUTH_ERROR``
(retried, after the ``Retry-After`` the answer asks for). An answer that is not FCM's JSON error (a
proxy's page, a wrong ``base_url``) is retried too: it says nothing about the token.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from messagecenter.core.errors import ConfigError
from messagecenter.core.providers import FCM_BASE_URL
from messagecenter.core.types import Channel
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, truncate
from messagecenter.delivery.http import classify_status, retry_after_seconds
from messagecenter.delivery.httpclient import Answer, DeadlineClient, DeadlineExceeded, DeadlineTransport
from messagecenter.feedback.types import FailureReason

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# Renew an access token this long before it expires (at most a quarter of its lifetime).
RENEW_MARGIN_SECONDS = 300.0

# FCM's error codes (google.firebase.fcm.v1.FcmError) and the canonical statuses that stand in
# for them when an answer has none.
DEAD_TOKEN = frozenset({"UNREGISTERED", "NOT_FOUND"})
PERMANENT = frozenset({"INVALID_ARGUMENT", "SENDER_ID_MISMATCH"})
TRANSIENT = frozenset(
    {
        "QUOTA_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "INTERNAL",
        "THIRD_PARTY_AUTH_ERROR",
        "UNAUTHENTICATED",  # our access token, refused twice: a configuration to fix
        "PERMISSION_DENIED",  # the service account may not send for this project: the same
    }
)


@dataclass(frozen=True)
class FcmAccount:
    """Where and as whom to send, as read from an Airflow connection.

    :param project_id: the Firebase project.
    :param service_account: the service account's JSON key, decoded (``client_email``,
        ``private_key``, ``token_uri``...).
    :param base_url: FCM's address (a local server in tests).
    :param ca_file: a CA bundle to trust instead of the system's (a TLS-intercepting proxy, tests).
    """

    project_id: str
    service_account: Mapping[str, Any] = field(hash=False)
    base_url: str = FCM_BASE_URL
    ca_file: str | None = None

    @property
    def send_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/v1/projects/{self.project_id}/messages:send"

    def __repr__(self) -> str:  # never show the key, even in a traceback
        email = self.service_account.get("client_email")
        return f"FcmAccount(project_id={self.project_id!r}, client_email={email!r}, url={self.base_url!r})"


def fcm_message(message: OutgoingMessage) -> dict[str, Any]:
    """The ``messages:send`` body of one push, in FCM v1's format.

    Title and body go in ``notification``; ``data`` values must be strings for FCM, so any other
    value is sent as its JSON text. The platform block carries the template's options: Android's
    ``collapse_key``, ``sound`` and ``notification_count`` (the badge); for an iOS token sent through
    Firebase, the ``apns`` headers and ``aps`` dictionary (badge, sound, thread-id).
    """
    if message.channel not in (Channel.ANDROID, Channel.IOS):
        raise ValueError(f"channel {message.channel} is not sent over FCM")
    body: dict[str, Any] = {"token": message.address}
    notification = {k: v for k, v in (("title", message.subject), ("body", message.text)) if v}
    if notification:
        body["notification"] = notification
    if message.data:
        body["data"] = {
            str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, allow_nan=False)
            for k, v in message.data.items()
        }
    if message.channel == Channel.ANDROID:
        android: dict[str, Any] = {}
        if message.collapse_id:
            android["collapse_key"] = message.collapse_id
        shown = {"sound": message.sound, "notification_count": message.badge}
        if any(v is not None for v in shown.values()):
            android["notification"] = {k: v for k, v in shown.items() if v is not None}
        if android:
            body["android"] = android
    else:
        aps = {"badge": message.badge, "sound": message.sound, "thread-id": message.thread_id}
        apns: dict[str, Any] = {}
        if message.collapse_id:
            apns["headers"] = {"apns-collapse-id": message.collapse_id}
        if any(v is not None for v in aps.values()):
            apns["payload"] = {"aps": {k: v for k, v in aps.items() if v is not None}}
        if apns:
            body["apns"] = apns
    return {"message": body}


# --- OAuth2 access tokens ----------------------------------------------------------------------


class AccessTokens:
    """The OAuth2 access tokens of one service account, shared by the threads of the process.

    A token is fetched when first needed and renewed before it expires (``RENEW_MARGIN_SECONDS``
    before, or a quarter of its lifetime for a short one); :meth:`refused` renews it when FCM
    refuses it earlier (revoked, clock skew), once however many threads saw the refusal.

    :raises ValueError: the service account's key cannot be read.
    """

    def __init__(self, info: Mapping[str, Any], *, timeout: float = 10.0, verify: ssl.SSLContext) -> None:
        from google.oauth2 import service_account  # google-auth: imported when a transport opens

        self._credentials = service_account.Credentials.from_service_account_info(dict(info), scopes=[SCOPE])
        self._timeout = timeout
        self._verify = verify
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.fetched = 0  # tokens fetched so far

    def get(self) -> str:
        """A valid access token.

        :raises google.auth.exceptions.GoogleAuthError: the token endpoint refused or did not answer.
        """
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def refused(self, token: str) -> None:
        """FCM refused ``token``: the next :meth:`get` fetches another (unless one was fetched
        since)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> None:
        with httpx.Client(timeout=self._timeout, verify=self._verify) as client:
            self._credentials.refresh(_TokenRequest(client))
        self.fetched += 1
        self._token = self._credentials.token
        expiry = self._credentials.expiry
        if expiry is None:
            lifetime = 3600.0
        else:
            expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)
            lifetime = max((expiry - datetime.now(UTC)).total_seconds(), 0.0)
        self._renew_at = time.monotonic() + lifetime - min(RENEW_MARGIN_SECONDS, lifetime / 4)
        log.debug("FCM access token fetched, valid for %.0f s", lifetime)


class _TokenResponse:
    """google-auth's view of an httpx answer."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _TokenRequest:
    """google-auth's transport (``google.auth.transport.Request``) over an httpx client."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _TokenResponse:
        from google.auth import exceptions

        try:
            response = self._client.request(
                method, url, content=body, headers=headers, timeout=timeout or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise exceptions.TransportError(f"{type(exc).__name__}: {exc}") from exc
        return _TokenResponse(response)


_tokens: dict[tuple[str, ...], AccessTokens] = {}
_tokens_lock = threading.Lock()


def access_tokens(account: FcmAccount, *, timeout: float = 10.0) -> AccessTokens:
    """The process's :class:`AccessTokens` of the account's service account (one per key)."""
    info = account.service_account
    key = (
        str(info.get("client_email")),
        str(info.get("token_uri")),
        hashlib.sha256(str(info.get("private_key")).encode()).hexdigest(),
    )
    with _tokens_lock:
        tokens = _tokens.get(key)
        if tokens is None:
            tokens = _tokens[key] = AccessTokens(info, timeout=timeout, verify=ssl_context(account.ca_file))
        return tokens


@functools.cache
def ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Built once per CA bundle and process: loading one takes ~20 ms."""
    return ssl.create_default_context(cafile=ca_file)


# --- answers -------------------------------------------------------------------------------------


def error_code(answer: Any) -> tuple[str | None, str]:
    """FCM's error code of an error answer (its ``FcmError`` detail, else the canonical status),
    and its message; ``(None, "")`` for an answer that is not a Google API error."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return None, ""
    message = str(error.get("message") or "")
    for detail in error.get("details") or ():
        fcm_error = isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError")
        if fcm_error and detail.get("errorCode"):
            return str(detail["errorCode"]), message
    status = error.get("status")
    return (str(status) if status else None), message


def classify(code: str | None, http_status: int) -> Outcome:
    """The outcome of an FCM error code (see the module's docstring); an undocumented one follows
    the HTTP status, an answer without any is transient."""
    if code in DEAD_TOKEN or code in PERMANENT:
        return Outcome.PERMANENT
    if code in TRANSIENT or code is None:
        return Outcome.TRANSIENT
    return classify_status(http_status)


# --- the transport -------------------------------------------------------------------------------


class FcmTransport(DeadlineTransport):
    """Send push messages through FCM HTTP v1 (see the module's docstring).

    ``with transport:`` reads the account and prepares one kept-alive HTTP/1.1 connection (opened
    with the first message, see :class:`~messagecenter.delivery.httpclient.DeadlineClient`: each
    request has an overall deadline). If the account cannot be read or its key is unusable, nothing
    is raised: every ``send`` answers ``TRANSIENT`` with the reason, so the events are retried later
    and the provider's breaker opens.

    :param read_account: returns the account; called once per chunk.
    The limits (``name``, ``timeout``, ``deadline``, ``max_connections``, ``max_rate``) are
    :class:`~messagecenter.delivery.httpclient.DeadlineTransport`'s.
    """

    def __init__(self, read_account: Callable[[], FcmAccount], **limits: Any) -> None:
        super().__init__(**limits)
        self.read_account = read_account
        self._account: FcmAccount | None = None
        self._tokens: AccessTokens | None = None

    def __enter__(self) -> FcmTransport:
        self._error = None
        try:
            self._account = self.read_account()
            self._tokens = access_tokens(self._account, timeout=self.timeout)
        except (ConfigError, ValueError) as exc:  # ValueError: google-auth cannot read the key
            self._error = f"FCM account of {self.name!r}: {exc}"
            log.warning("%s", self._error)
            return self
        self._client = DeadlineClient(
            ssl_context=ssl_context(self._account.ca_file),
            http2=False,
            timeout=self.timeout,
            deadline=self.deadline,
        )
        return self

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message; never raises for a delivery problem, the result says what happened."""
        if self._client is None or self._account is None or self._tokens is None:
            error = self._error or "FcmTransport used outside `with transport:`"
            return SendResult(Outcome.TRANSIENT, error=truncate(error))
        try:
            body = json.dumps(fcm_message(message), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:  # another channel, data that is not JSON
            return SendResult(Outcome.PERMANENT, error=truncate(f"cannot build the FCM message: {exc}"))
        from google.auth.exceptions import GoogleAuthError

        answer: Answer | None = None
        for _ in range(2):  # a second time only with a new token, after FCM refused the first
            try:
                token = self._tokens.get()
            except GoogleAuthError as exc:
                return self._transient(message, f"no OAuth2 access token: {type(exc).__name__}: {exc}")
            headers = {**_HEADERS, "Authorization": f"Bearer {token}"}
            try:
                answer = self._client.request("POST", self._account.send_url, headers, body)
            except DeadlineExceeded as exc:
                return self._transient(message, str(exc))
            except httpcore.TimeoutException as exc:
                return self._transient(message, f"timeout ({self.timeout:g}s): {type(exc).__name__} {exc}")
            except (
                httpcore.NetworkError,
                httpcore.ProtocolError,
                httpcore.UnsupportedProtocol,
                OSError,
            ) as exc:
                return self._transient(message, f"{type(exc).__name__}: {exc}")
            if answer.status != 401 or _code(answer)[0] == "THIRD_PARTY_AUTH_ERROR":
                break
            log.info("FCM %r refused the access token (HTTP 401): fetching another", self.name)
            self._tokens.refused(token)
        assert answer is not None
        return self._result(answer)

    def _result(self, answer: Answer) -> SendResult:
        text = truncate(answer.text) or None
        extra: dict[str, Any] = {"http_status": answer.status}
        if (retry_after := retry_after_seconds(answer.headers.get("retry-after"))) is not None:
            extra["retry_after"] = retry_after
        if 200 <= answer.status <= 299:
            try:
                name = json.loads(answer.content).get("name")
            except (ValueError, AttributeError):
                name = None
            return SendResult(
                Outcome.SENT, message_id=str(name) if name else None, provider_answer=text, extra=extra
            )
        code, reason = _code(answer)
        outcome = classify(code, answer.status)
        if code is not None:
            extra["fcm_error"] = code
        if code in DEAD_TOKEN:
            extra.update(dead_address=True, failure_reason=int(FailureReason.USER_UNKNOWN), source="fcm")
        if code is None:
            error = f"HTTP {answer.status}: not an FCM answer"
        else:
            error = f"FCM {code} (HTTP {answer.status}): {reason}".strip()
        return SendResult(outcome, provider_answer=text, error=truncate(error), extra=extra)

    def _transient(self, message: OutgoingMessage, error: str) -> SendResult:
        log.debug("event %s: %s", message.event_id, error)
        return SendResult(Outcome.TRANSIENT, error=truncate(error))


_HEADERS = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}


def _code(answer: Answer) -> tuple[str | None, str]:
    try:
        return error_code(json.loads(answer.content))
    except ValueError:
        return None, ""
