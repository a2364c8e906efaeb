"""What every provider webhook shares: the request, the secret, the normalised event and the errors.

The API route turns the HTTP request into a :class:`WebhookRequest` and the connection
``mc_feedback_<provider>`` into a :class:`ProviderSecret`, then calls the provider module's
``verify`` (which raises before anything of the body is trusted) and ``parse``. Nothing here knows
Airflow, the database or the web framework, so each scheme is tested on bytes alone.

Errors, and the answer they call for:

* :class:`SignatureError`: the request is not proven to come from the provider (401/403);
* :class:`PayloadError`: the body is not what the provider sends, or too big (400);
* :class:`~messagecenter.core.errors.ConfigError`: the connection lacks what the scheme needs (5xx,
  so the provider retries once an operator has fixed it);
* :class:`~messagecenter.core.errors.TransientError`: a certificate or confirmation URL could not be
  fetched (5xx, the provider retries).
"""

from __future__ import annotations

import enum
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx

from messagecenter.core.errors import ConfigError, MessageCenterError, TransientError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # SendGrid batches stay well below; anything bigger is refused unread
MAX_TEXT_CHARS = 2000  # provider texts kept for qualification are cut here
DEFAULT_MAX_AGE_SECONDS = 15 * 60  # signed timestamps older (or further in the future) are refused
FETCH_TIMEOUT_SECONDS = 5.0
MAX_FETCH_BYTES = 64 * 1024  # a signing certificate is a few kB


class WebhookError(MessageCenterError):
    """Base class of the errors a provider webhook raises on purpose."""


class SignatureError(WebhookError):
    """The request is not proven to come from the provider: answer 401/403 and use nothing of it."""


class PayloadError(WebhookError):
    """The body is not what the provider sends (not JSON, wrong shape, too big): answer 400."""


class FeedbackKind(enum.StrEnum):
    """What a provider says happened to one message for one recipient."""

    DELIVERED = "delivered"
    FAILED = "failed"  # the provider gave up (a bounce, a rejection, an undelivered SMS)
    DEFERRED = "deferred"  # not delivered yet; the provider keeps trying
    COMPLAINT = "complaint"  # the recipient reported the message as spam
    UNSUBSCRIBE = "unsubscribe"  # the recipient asked for no more messages
    IGNORED = "ignored"  # an event type this code does not know: kept for the record, changes nothing


class Severity(enum.StrEnum):
    """The provider's own hint; the qualification rules have the last word."""

    PERMANENT = "permanent"
    TEMPORARY = "temporary"


@dataclass(frozen=True)
class FeedbackEvent:
    """One normalised feedback event.

    :param provider: ``ses``, ``sendgrid``, ``mailgun``, ``postmark``, ``twilio`` or ``vonage``.
    :param provider_event_id: unique per event at the provider, stable across its retries: the key
        the caller deduplicates on.
    :param kind: what happened.
    :param provider_message_id: the id the provider returned when the message was sent.
    :param recipient: e-mail address or phone number, as the provider wrote it.
    :param severity: the provider's permanent/temporary hint, when it gives one.
    :param text: the provider's diagnostic (SMTP answer, reason, error code), cut to
        :data:`MAX_TEXT_CHARS`, for the qualification rules.
    :param occurred_at: when the provider says it happened (aware), or None.
    :param event_id: our event id, when the provider echoed it (custom args, metadata, user
        variables, client reference, callback URL: key ``mc_event_id``).
    """

    provider: str
    provider_event_id: str
    kind: FeedbackKind
    provider_message_id: str | None = None
    recipient: str | None = None
    severity: Severity | None = None
    text: str | None = None
    occurred_at: datetime | None = None
    event_id: int | None = None


class Headers(Mapping[str, str]):
    """HTTP headers, looked up case-insensitively; a repeated header keeps its last value."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = {name.lower(): value for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:  # names only: values carry signatures and credentials
        return f"Headers({sorted(self._items)!r})"


@dataclass(frozen=True)
class WebhookRequest:
    """The HTTP request a provider made, as received.

    :param method: ``POST`` or ``GET``.
    :param url: the full URL as the provider called it (scheme, host, path and query): Twilio signs it.
    :param headers: request headers; any mapping or list of pairs, looked up case-insensitively.
    :param body: the raw body bytes, untouched (signatures cover them byte for byte).
    :param form: the form parameters when the caller already decoded them; by default they are
        decoded from a form-encoded body.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=Headers)
    body: bytes = b""
    form: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            object.__setattr__(self, "headers", Headers(self.headers))
        object.__setattr__(self, "method", self.method.upper())

    @property
    def content_type(self) -> str:
        """The media type of the body, lower case, without parameters (``application/json``)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def form_items(self) -> list[tuple[str, str]]:
        """The form parameters, in order, repeated names kept."""
        if self.form is not None:
            return list(self.form)
        if self.content_type != "application/x-www-form-urlencoded":
            return []
        check_size(self.body)
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("form body is not UTF-8") from None
        return parse_qsl(text, keep_blank_values=True)

    def query_items(self) -> list[tuple[str, str]]:
        """The URL's query parameters, in order, repeated names kept."""
        return parse_qsl(urlsplit(self.url).query, keep_blank_values=True)


@dataclass(frozen=True)
class ProviderSecret:
    """What the connection ``mc_feedback_<provider>`` holds.

    :param password: signing key, auth token, signature secret or HTTP Basic password.
    :param login: HTTP Basic user (Postmark).
    :param extra: scheme settings: ``public_key`` (SendGrid), ``topic_arns`` (SES),
        ``max_age_seconds``, ``signature_method`` and ``allow_unsigned`` (Vonage).
    """

    password: str | None = None
    login: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        shown = f"login={self.login!r}, password={bool(self.password)}, extra={sorted(self.extra)}"
        return f"ProviderSecret({shown})"

    def require_password(self, provider: str, what: str) -> str:
        """The password, or a :class:`ConfigError` naming the connection."""
        if not self.password:
            raise ConfigError(f"connection mc_feedback_{provider} has no password ({what})")
        return self.password

    def max_age(self, provider: str, default: float = DEFAULT_MAX_AGE_SECONDS) -> float:
        """Extra ``max_age_seconds``: how old a signed timestamp may be (positive number of seconds)."""
        value = self.extra.get("max_age_seconds", default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(
                f"connection mc_feedback_{provider}: extra max_age_seconds must be a positive number"
            )
        return float(value)

    def flag(self, name: str) -> bool:
        """A boolean extra (``true``/``"true"``), false when absent."""
        value = self.extra.get(name, False)
        return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))


class ReplayGuard(Protocol):
    """Remembers single-use tokens (Mailgun's) so a captured request cannot be played again.

    The API side implements it on the database (an insert that fails on a known token); the default
    below only protects one process.
    """

    def first_use(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at`` (epoch seconds); False if it was already recorded."""
        ...


class InMemoryReplayGuard:
    """A bounded, thread-safe :class:`ReplayGuard` for one process (tests, single-worker setups)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float) -> bool:
        now = time.time()
        with self._lock:
            known = self._expiry.get(key)
            if known is not None and known > now:
                return False
            self._expiry[key] = expires_at
            self._expiry.move_to_end(key)
            while len(self._expiry) > self._max_entries:
                self._expiry.popitem(last=False)
            return True


def fetch_url(url: str, *, max_bytes: int = MAX_FETCH_BYTES) -> bytes:
    """GET ``url`` (no redirects, a short timeout, a size cap); any failure is a :class:`TransientError`."""
    try:
        with (
            httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise TransientError(f"GET {url} answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise TransientError(f"GET {url} answered more than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise TransientError(f"GET {url} failed: {exc}") from exc


class CachedFetcher:
    """Fetches a URL once and keeps the answer (SNS signing certificates never change under one URL)."""

    def __init__(self, fetch: Callable[[str], bytes] = fetch_url, max_entries: int = 32) -> None:
        self._fetch = fetch
        self._max_entries = max_entries
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, url: str) -> bytes:
        with self._lock:
            if url in self._cache:
                self._cache.move_to_end(url)
                return self._cache[url]
        data = self._fetch(url)  # outside the lock: a slow fetch does not hold up cached answers
        with self._lock:
            self._cache[url] = data
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return data


@dataclass(frozen=True)
class VerifyContext:
    """What verification needs from the outside world, injectable for tests.

    :param clock: the current time, epoch seconds.
    :param replay_guard: where single-use tokens are recorded (Mailgun).
    :param fetch_certificate: GETs an SNS signing certificate by URL (already checked against the
        pinned host); the default fetches over HTTPS once per URL.
    """

    clock: Callable[[], float] = time.time
    replay_guard: ReplayGuard = field(default_factory=InMemoryReplayGuard)
    fetch_certificate: Callable[[str], bytes] = field(default_factory=CachedFetcher)


DEFAULT_CONTEXT = VerifyContext()


class Provider(Protocol):
    """What each provider module offers (the module itself is the implementation)."""

    def verify(
        self, request: WebhookRequest, secret: ProviderSecret, context: VerifyContext = DEFAULT_CONTEXT
    ) -> None: ...

    def parse(self, request: WebhookRequest) -> list[FeedbackEvent]: ...


# --- helpers shared by the provider modules --------------------------------------------------------


def check_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(f"body of {len(body)} bytes is over the {MAX_BODY_BYTES}-byte limit")


def load_json(body: bytes | str, what: str = "body") -> Any:
    """Parse JSON, turning every way it can fail (size, encoding, syntax, nesting) into a PayloadError."""
    if isinstance(body, bytes):
        check_size(body)
    elif len(body) > MAX_BODY_BYTES:
        raise PayloadError(f"{what} is over the {MAX_BODY_BYTES}-character limit")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise PayloadError(f"{what} is not JSON: {str(exc)[:200]}") from None


def expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} is not a JSON object")
    return value


def text_field(data: Mapping[str, Any], key: str, what: str) -> str | None:
    """A scalar field as text (numbers are ids too), None when absent; anything else is a PayloadError."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise PayloadError(f"{what}: field {key!r} is not a string")


def required_text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = text_field(data, key, what)
    if not value:
        raise PayloadError(f"{what}: field {key!r} is missing")
    return value


def clip(text: str | None) -> str | None:
    """Strip and cut a provider text; empty becomes None."""
    if text is None:
        return None
    text = text.strip()
    return text[:MAX_TEXT_CHARS] if text else None


def join_text(*parts: str | None, sep: str = ": ") -> str | None:
    """Join the non-empty parts of a diagnostic (``"Permanent/General: smtp; 550 5.1.1 ..."``)."""
    return clip(sep.join(p.strip() for p in parts if p and p.strip()))


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when it names no zone); None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def epoch_time(value: Any) -> datetime | None:
    """Epoch seconds (number or numeric string) as an aware UTC datetime; None if unreadable."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


_EVENT_ID = re.compile(r"-?[0-9]{1,19}")


def event_id_of(value: Any) -> int | None:
    """Our event id from an echoed value (``"123"`` or ``123``), None unless it is a signed 64-bit integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _EVENT_ID.fullmatch(value.strip()):
        number = int(value)
    else:
        return None
    return number if -(2**63) <= number < 2**63 else None


def check_age(timestamp: str, now: float, max_age: float, what: str) -> float:
    """The signed timestamp (epoch seconds) if it is within ``max_age`` of now, else a SignatureError."""
    try:
        moment = float(timestamp)
    except ValueError:
        raise SignatureError(f"{what} timestamp {timestamp[:40]!r} is not a number") from None
    if not abs(now - moment) <= max_age:  # also refuses NaN
        raise SignatureError(
            f"{what} timestamp is {now - moment:.0f} s away from now (limit {max_age:.0f} s)"
        )
    return moment
