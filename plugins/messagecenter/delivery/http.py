"""SMS and push over a provider's HTTP API: one pooled client per chunk, every answer classified.

The provider is an :class:`HttpApi`, read when the chunk starts, never at import or DAG parse time
(``messagecenter.airflow.transports`` reads it from the ``mc_sms`` / ``mc_push`` connection): it says
how the client authenticates, what one message's request is and what an answer means, while
:class:`HttpTransport` owns the pooled client, the deadline, the network errors and ``Retry-After``.
:class:`HttpEndpoint` is the generic JSON provider: each message is one ``POST`` of a small JSON
document; the event id travels along so a provider (or a gateway in front of it) can drop the
duplicate that a retry after a timeout may produce. ``messagecenter.delivery.sms_rest`` maps
Twilio's and Vonage's REST APIs the same way.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

import httpx

from messagecenter.core.errors import ConfigError
from messagecenter.core.types import Channel
from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, truncate
from messagecenter.delivery.httpclient import HttpLimits

log = logging.getLogger(__name__)

PUSH_PLATFORMS: dict[int, str] = {Channel.IOS: "ios", Channel.ANDROID: "android"}
JSON = "application/json"


@dataclass(frozen=True)
class HttpRequest:
    """One message's request: the URL it is posted to, its body and the body's media type."""

    url: str
    content: bytes
    content_type: str


class HttpApi(Protocol):
    """A provider's HTTP API, as :class:`HttpTransport` uses it.

    ``headers`` and ``auth`` (basic credentials, or None) go on the chunk's pooled client.
    ``request`` builds one message's request, raising ``ValueError`` or ``TypeError`` for a message
    the provider cannot take (the event then fails alone); ``answer`` says what a complete answer
    means, without raising. The transport adds ``http_status`` and ``retry_after`` to its extras
    and the answer's text when the result has none.
    """

    @property
    def url(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def auth(self) -> tuple[str, str] | None: ...

    def request(self, message: OutgoingMessage) -> HttpRequest: ...

    def answer(self, response: httpx.Response) -> SendResult: ...


@dataclass(frozen=True)
class HttpEndpoint:
    """Where and how to POST, as read from an Airflow connection.

    :param url: full URL of the send endpoint.
    :param headers: headers added to every request (connection extra ``headers``, bearer token).
    :param auth: HTTP basic credentials (login, password), or None.
    """

    url: str
    headers: dict[str, str]
    auth: tuple[str, str] | None = None

    def __repr__(self) -> str:  # never show credentials, even in a traceback
        return f"HttpEndpoint(url={self.url!r}, headers={sorted(self.headers)!r}, auth={bool(self.auth)})"

    def request(self, message: OutgoingMessage) -> HttpRequest:
        """The message's JSON document (:func:`request_body`), posted to :attr:`url`."""
        body = json.dumps(request_body(message), ensure_ascii=False, allow_nan=False).encode()
        return HttpRequest(self.url, body, JSON)

    def answer(self, response: httpx.Response) -> SendResult:
        """:func:`classify_status` decides; a 2xx answer's ``id`` or ``message_id`` is the message id."""
        outcome = classify_status(response.status_code)
        if outcome is Outcome.SENT:
            return SendResult(outcome, message_id=_provider_message_id(response))
        return SendResult(outcome, error=http_error(response))


def request_body(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON document posted for one SMS (channel 1) or push (41 iOS, 42 Android) message."""
    if message.channel == Channel.SMS:
        return {"to": message.address, "text": message.text, "event_id": message.event_id}
    if message.channel in PUSH_PLATFORMS:
        return {
            "to": message.address,
            "platform": PUSH_PLATFORMS[message.channel],
            "title": message.subject,
            "body": message.text,
            "data": message.data or {},
            "event_id": message.event_id,
        }
    raise ValueError(f"channel {message.channel} is not sent over HTTP")


def _provider_message_id(response: httpx.Response) -> str | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    value = answer.get("id", answer.get("message_id"))
    return None if value is None else str(value)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def http_error(response: httpx.Response) -> str:
    """``HTTP 503 Service Unavailable``: the error of an answer that is not a success."""
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def classify_status(status: int) -> Outcome:
    """2xx sent; 429, 408 and 5xx worth a retry; any other 4xx permanent.

    Anything else (a redirect: httpx does not follow them) is retried too: a permanent failure loses the
    message, a transient one only costs a few tries before the event fails anyway.
    """
    if 200 <= status <= 299:
        return Outcome.SENT
    if 400 <= status <= 499 and status not in (408, 429):
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


class HttpTransport(HttpLimits):
    """POST SMS and push messages to a provider's HTTP API.

    ``with transport:`` reads the provider's :class:`HttpApi` and opens one pooled
    ``httpx.AsyncClient`` (kept-alive connections) on a private event loop for the chunk: asyncio
    gives each request an overall deadline, which a provider trickling its answer cannot stretch. If
    the API cannot be read (:class:`ConfigError`), nothing is raised: every ``send`` answers
    ``TRANSIENT`` with the reason, so the events are retried later.

    :param read_endpoint: returns the provider's API (an :class:`HttpEndpoint` for the generic JSON
        one); called once per chunk.
    The limits (``name``, ``timeout``, ``deadline``, ``max_connections``, ``max_rate``) are
    :class:`~messagecenter.delivery.httpclient.HttpLimits`'.
    """

    def __init__(self, read_endpoint: Callable[[], HttpApi], **limits: Any) -> None:
        super().__init__(**limits)
        self.read_endpoint = read_endpoint
        self._endpoint: HttpApi | None = None
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> HttpTransport:
        self._error = None
        try:
            self._endpoint = self.read_endpoint()
        except ConfigError as exc:
            self._error = str(exc)
            log.warning("HTTP transport %r: %s", self.name, exc)
            return self
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            timeout=self.timeout,
            verify=_ssl_context(),  # built once per process: loading the CA bundle takes ~20 ms
            headers={**self._endpoint.headers, "Accept": JSON},
            auth=self._endpoint.auth,
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        loop, self._loop = self._loop, None
        if loop is not None:
            if client is not None:
                loop.run_until_complete(client.aclose())
            loop.close()

    def send(self, message: OutgoingMessage) -> SendResult:
        """POST one message; never raises for a delivery problem, the result says what happened."""
        if self._client is None or self._endpoint is None or self._loop is None:
            error = self._error or "HttpTransport used outside `with transport:`"
            return SendResult(Outcome.TRANSIENT, error=truncate(error))
        try:
            request = self._endpoint.request(message)
        except (TypeError, ValueError) as exc:  # unknown channel, data that is not JSON
            return SendResult(Outcome.PERMANENT, error=truncate(f"cannot build the request: {exc}"))
        try:
            response = self._loop.run_until_complete(self._post(self._client, request))
        except TimeoutError:
            return self._transient(message, f"no complete answer within the deadline of {self.deadline:g} s")
        except httpx.TimeoutException as exc:
            return self._transient(message, f"timeout after {self.timeout:g}s: {type(exc).__name__} {exc}")
        except httpx.HTTPError as exc:  # ConnectError and the other TransportErrors, decoding errors
            return self._transient(message, f"{type(exc).__name__}: {exc}")
        result = self._endpoint.answer(response)
        extra: dict[str, Any] = {"http_status": response.status_code}
        if (retry_after := retry_after_seconds(response.headers.get("Retry-After"))) is not None:
            extra["retry_after"] = retry_after
        result = replace(
            result,
            provider_answer=truncate(result.provider_answer or response.text) or None,
            error=truncate(result.error),
            extra={**extra, **result.extra},
        )
        if result.outcome is not Outcome.SENT:
            log.debug("event %s: HTTP %s -> %s", message.event_id, response.status_code, result.outcome.value)
        return result

    async def _post(self, client: httpx.AsyncClient, request: HttpRequest) -> httpx.Response:
        """POST ``request``, answer included, within the deadline (one task, where ``wait_for`` makes two)."""
        async with asyncio.timeout(self.deadline):
            return await client.post(
                request.url, content=request.content, headers={"Content-Type": request.content_type}
            )

    def _transient(self, message: OutgoingMessage, error: str) -> SendResult:
        log.debug("event %s: %s", message.event_id, error)
        return SendResult(Outcome.TRANSIENT, error=truncate(error))
