"""iOS push over the Apple Push Notification service: HTTP/2, token-based (JWT) authentication.

One ``POST {base_url}/3/device/<token>`` per message on a kept-alive HTTP/2 connection. The
provider token is a JWT signed ES256 with the team's key (``.p8``): header ``alg`` + ``kid``,
claims ``iss`` (team id) + ``iat``. Apple refuses tokens older than an hour and renewals more
frequent than every twenty minutes, so one token is shared by every transport of the process that
uses the same key and renewed after fifty minutes, or at once when APNs answers
``ExpiredProviderToken`` (then the message is sent again, once).

``apns-id`` is the event id written as a UUID, so a message sent again after a lost connection
carries the same id. A connection that APNs closes (GOAWAY) is reopened: a request above the
GOAWAY's last stream was never processed and goes out on the new connection (httpcore does it), a
request whose answer was lost with the connection is sent once more. Answers: 200 Sent (the
message id is ``apns-id``); 410 ``Unregistered`` Failed, and the token goes into quarantine at once
(Campaign: Hard, User unknown); other 400s, 404, 405, 413 Failed (that event alone); 429, 500, 503
and our own provider-token problems (403) retried.

A 410's ``timestamp`` is when APNs last confirmed the token was no longer valid for the topic (ms
since the epoch); Apple's rule is to stop sending to it unless the device registered it with the
provider again after that. Message Center does not see registrations: an event only carries the
token the app's backend has, and an event received after the timestamp says nothing about the
device (the backend may send a stale token for months), so the token is quarantined whatever the
event's age. The device registering it again is the backend releasing it from quarantine
(``DELETE /api/v1/quarantine``, ``quarantine release``); a later 410 quarantines it again. The
timestamp is kept in the error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpcore

from messagecenter.core.errors import ConfigError
from messagecenter.core.providers import APNS_BASE_URLS, APNS_ENVIRONMENT, APNS_TIME_TO_LIVE
from messagecenter.core.types import Channel
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, truncate
from messagecenter.delivery.http import classify_status, retry_after_seconds
from messagecenter.delivery.httpclient import Answer, DeadlineClient, DeadlineExceeded, DeadlineTransport
from messagecenter.feedback.types import FailureReason

log = logging.getLogger(__name__)

# A provider token is renewed after this long: Apple refuses one older than an hour, and renewals
# more frequent than every twenty minutes (TooManyProviderTokenUpdates).
RENEW_AFTER_SECONDS = 50 * 60.0
MAX_PAYLOAD_BYTES = 4096  # an alert's payload (Apple answers 413 PayloadTooLarge above)

# Answers that come from our own credentials or set-up: every event would get them, so they are
# retried (and open the breaker) rather than failing each event.
_OUR_PROBLEM = frozenset(
    {
        "ExpiredProviderToken",
        "InvalidProviderToken",
        "MissingProviderToken",
        "BadCertificate",
        "BadCertificateEnvironment",
        "TooManyProviderTokenUpdates",
        "Forbidden",
    }
)


@dataclass(frozen=True)
class ApnsAccount:
    """Where and as whom to send, as read from an Airflow connection.

    :param team_id: the Apple developer team (the JWT's ``iss``).
    :param key_id: the signing key's id (the JWT's ``kid``).
    :param topic: the app's bundle id (``apns-topic``).
    :param private_key: the key's PEM text (``.p8``).
    :param base_url: APNs's address: production, sandbox, or a local server in tests.
    :param ca_file: a CA bundle to trust instead of the system's (tests).
    :param time_to_live: seconds APNs keeps a message for an offline device (0: only now).
    """

    team_id: str
    key_id: str
    topic: str
    private_key: str = field(repr=False)
    base_url: str = APNS_BASE_URLS[APNS_ENVIRONMENT]
    ca_file: str | None = None
    time_to_live: int = APNS_TIME_TO_LIVE


_PEM = re.compile(r"(-----BEGIN [A-Z ]+-----)(.*?)(-----END [A-Z ]+-----)", re.DOTALL)


def pem_text(key: str) -> str:
    """A key's PEM text with its line breaks, however it was typed: as is, with them escaped
    (``\\n``: a PEM on one line of JSON or of an environment variable), or without them (pasted
    into a one-line field, such as the connection form's password, which drops them)."""
    text = key.strip()
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    match = _PEM.fullmatch(text)
    if "\n" in text or match is None:
        return text
    begin, body, end = match.groups()
    body = "".join(body.split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([begin, *lines, end]) + "\n"


def apns_id(event_id: int) -> str:
    """The event id as a canonical UUID (the same for every try of the event)."""
    return str(uuid.UUID(int=event_id % (1 << 128)))


def apns_request(
    message: OutgoingMessage, account: ApnsAccount, *, now: float | None = None
) -> tuple[str, dict[str, str], bytes]:
    """The path, the headers (authorization aside) and the body of one message.

    An alert (title or body) has priority 10; a message with data only is a background one
    (``content-available``, priority 5, as Apple requires). The template's data goes beside ``aps``.

    :raises ValueError: the message cannot be sent (another channel, a data key ``aps``, a payload
        over Apple's 4 KB).
    """
    if message.channel != Channel.IOS:
        raise ValueError(f"channel {message.channel} is not sent over APNs")
    data = message.data or {}
    if "aps" in data:
        raise ValueError('push data may not have a key "aps" (it is the notification itself)')
    alert = {k: v for k, v in (("title", message.subject), ("body", message.text)) if v}
    aps: dict[str, Any] = {"alert": alert} if alert else {"content-available": 1}
    for key, value in (("badge", message.badge), ("sound", message.sound), ("thread-id", message.thread_id)):
        if value is not None:
            aps[key] = value
    body = json.dumps({"aps": aps, **data}, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    payload = body.encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"the payload is {len(payload)} bytes, over APNs's {MAX_PAYLOAD_BYTES}")
    ttl = account.time_to_live
    headers = {
        "apns-topic": account.topic,
        "apns-push-type": "alert" if alert else "background",
        "apns-priority": "10" if alert else "5",
        "apns-expiration": str(int((now or time.time()) + ttl)) if ttl > 0 else "0",
        "apns-id": apns_id(message.event_id),
    }
    if message.collapse_id:
        headers["apns-collapse-id"] = message.collapse_id
    return f"/3/device/{message.address}", headers, payload


def unregistered_at(timestamp_ms: Any) -> datetime | None:
    """A 410's ``timestamp`` (milliseconds since the epoch) as a datetime; None if it is not one."""
    if not isinstance(timestamp_ms, int | float) or isinstance(timestamp_ms, bool):
        return None
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# --- provider tokens -----------------------------------------------------------------------------


class ProviderTokens:
    """The JWT provider token of one signing key, shared by the threads of the process.

    Signed when first needed, then reused until it is ``renew_after`` seconds old; :meth:`expired`
    renews it when APNs says it expired, once however many threads saw the answer.

    :raises ValueError: the key is not an EC P-256 private key in PEM.
    """

    def __init__(
        self, team_id: str, key_id: str, private_key: str, *, renew_after: float = RENEW_AFTER_SECONDS
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(private_key.encode(), password=None)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the private key is not a PEM key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the private key is not an EC P-256 key (an APNs .p8 key)")
        self._key = key
        self.team_id = team_id
        self.key_id = key_id
        self.renew_after = renew_after
        self._lock = threading.Lock()
        self._token: str | None = None
        self._signed_at = 0.0
        self.signed = 0  # tokens signed so far

    def get(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() - self._signed_at >= self.renew_after:
                self._sign()
            assert self._token is not None
            return self._token

    def expired(self, token: str) -> None:
        """APNs said ``token`` expired: renew it, unless it was renewed since."""
        with self._lock:
            if self._token == token:
                self._sign()

    def _sign(self) -> None:
        import jwt  # PyJWT, installed with Airflow

        self._token = jwt.encode(
            {"iss": self.team_id, "iat": int(time.time())},
            self._key,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )
        self._signed_at = time.monotonic()
        self.signed += 1
        log.debug("APNs provider token signed for team %s, key %s", self.team_id, self.key_id)


_tokens: dict[tuple[str, str, str], ProviderTokens] = {}
_tokens_lock = threading.Lock()


def provider_tokens(account: ApnsAccount) -> ProviderTokens:
    """The process's :class:`ProviderTokens` of the account's key."""
    key = (account.team_id, account.key_id, hashlib.sha256(account.private_key.encode()).hexdigest())
    with _tokens_lock:
        tokens = _tokens.get(key)
        if tokens is None:
            tokens = _tokens[key] = ProviderTokens(account.team_id, account.key_id, account.private_key)
        return tokens


@functools.cache
def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """One per CA bundle and process, for HTTP/2 connections only (httpcore sets its ALPN)."""
    return ssl.create_default_context(cafile=ca_file)


# --- the transport -------------------------------------------------------------------------------


class ApnsTransport(DeadlineTransport):
    """Send iOS push messages to APNs (see the module's docstring).

    ``with transport:`` reads the account and prepares one HTTP/2 connection (opened with the
    first message, see :class:`~messagecenter.delivery.httpclient.DeadlineClient`: each request
    has an overall deadline). If the account cannot be read or its key is unusable, nothing is
    raised: every ``send`` answers ``TRANSIENT`` with the reason, so the events are retried later
    and the provider's breaker opens.

    :param read_account: returns the account; called once per chunk.
    The limits (``name``, ``timeout``, ``deadline``, ``max_connections``, ``max_rate``) are
    :class:`~messagecenter.delivery.httpclient.DeadlineTransport`'s.
    """

    def __init__(self, read_account: Callable[[], ApnsAccount], **limits: Any) -> None:
        super().__init__(**limits)
        self.read_account = read_account
        self._account: ApnsAccount | None = None
        self._tokens: ProviderTokens | None = None

    def __enter__(self) -> ApnsTransport:
        self._error = None
        try:
            import h2  # noqa: F401  # HTTP/2, which APNs requires

            self._account = self.read_account()
            self._tokens = provider_tokens(self._account)
        except (ConfigError, ValueError, ImportError) as exc:
            self._error = f"APNs account of {self.name!r}: {exc}"
            log.warning("%s", self._error)
            return self
        self._client = DeadlineClient(
            ssl_context=_ssl_context(self._account.ca_file),
            http2=True,
            timeout=self.timeout,
            deadline=self.deadline,
        )
        return self

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message; never raises for a delivery problem, the result says what happened."""
        if self._client is None or self._account is None or self._tokens is None:
            error = self._error or "ApnsTransport used outside `with transport:`"
            return SendResult(Outcome.TRANSIENT, error=truncate(error))
        try:
            path, headers, body = apns_request(message, self._account)
        except (TypeError, ValueError) as exc:
            return SendResult(Outcome.PERMANENT, error=truncate(f"cannot build the APNs request: {exc}"))
        url = self._account.base_url.rstrip("/") + path
        renewed = resent = False
        while True:
            token = self._tokens.get()
            try:
                answer = self._client.request(
                    "POST", url, {**headers, "authorization": f"bearer {token}"}, body
                )
            except DeadlineExceeded as exc:
                return self._transient(message, str(exc))
            except httpcore.TimeoutException as exc:
                return self._transient(message, f"timeout ({self.timeout:g}s): {type(exc).__name__} {exc}")
            except (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError) as exc:
                # The connection went away before the answer (GOAWAY, reset): a new one, once.
                if resent:
                    return self._transient(message, f"connection lost twice: {type(exc).__name__}: {exc}")
                log.info("APNs %r: connection lost before an answer (%r): sending again", self.name, exc)
                resent = True
                continue
            except (
                httpcore.NetworkError,
                httpcore.ProtocolError,
                httpcore.UnsupportedProtocol,
                OSError,
            ) as exc:
                return self._transient(message, f"{type(exc).__name__}: {exc}")  # connect, TLS
            reason, fields = _reason(answer)
            if answer.status == 403 and reason == "ExpiredProviderToken" and not renewed:
                log.info("APNs %r: provider token expired, renewed", self.name)
                self._tokens.expired(token)
                renewed = True
                continue
            return self._result(message, answer, reason, fields)

    def _result(
        self, message: OutgoingMessage, answer: Answer, reason: str | None, fields: dict[str, Any]
    ) -> SendResult:
        status = answer.status
        text = truncate(answer.text) or None
        extra: dict[str, Any] = {"http_status": status}
        if (retry_after := retry_after_seconds(answer.headers.get("retry-after"))) is not None:
            extra["retry_after"] = retry_after
        if status == 200:
            message_id = answer.headers.get("apns-id") or apns_id(message.event_id)
            return SendResult(Outcome.SENT, message_id=message_id, provider_answer=text, extra=extra)
        if reason:
            extra["apns_reason"] = reason
        error = f"APNs {reason or 'error'} (HTTP {status})"
        if status == 410:
            error += ": the token is no longer valid for the topic"
            if (since := unregistered_at(fields.get("timestamp"))) is not None:
                error += f" (confirmed by APNs at {since.isoformat(timespec='seconds')})"
            extra.update(dead_address=True, failure_reason=int(FailureReason.USER_UNKNOWN), source="apns")
            return SendResult(Outcome.PERMANENT, provider_answer=text, error=error, extra=extra)
        if status == 403 or reason in _OUR_PROBLEM:
            outcome = Outcome.TRANSIENT
        elif status in (400, 404, 405, 413):
            outcome = Outcome.PERMANENT
        else:
            outcome = classify_status(status)  # 429, 500, 503 and anything unknown: retried
        return SendResult(outcome, provider_answer=text, error=error, extra=extra)

    def _transient(self, message: OutgoingMessage, error: str) -> SendResult:
        log.debug("event %s: %s", message.event_id, error)
        return SendResult(Outcome.TRANSIENT, error=truncate(error))


def _reason(response: Answer) -> tuple[str | None, dict[str, Any]]:
    """APNs's ``reason`` of an error answer, and the answer's JSON object (``{}`` when none)."""
    if response.status == 200 or not response.content:
        return None, {}
    try:
        answer = json.loads(response.content)
    except ValueError:
        return None, {}
    if not isinstance(answer, dict):
        return None, {}
    reason = answer.get("reason")
    return (str(reason) if reason else None), answer
