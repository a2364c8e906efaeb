"""SMS and push over a provider's JSON HTTP API: one pooled client per chunk, every answer classified.

The provider is described by an Airflow connection (``mc_sms``, ``mc_push``), read when the chunk
starts, never at import or DAG parse time. Each message is one ``POST`` of a small JSON document; the
event id travels along so a provider (or a gateway in front of it) can drop the duplicate that a retry
after a timeout may produce.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from messagecenter.delivery.base import Outcome, OutgoingMessage, SendResult, truncate
from messagecenter.exceptions import ConfigError

log = logging.getLogger(__name__)

SMS_CHANNEL = 1
PUSH_PLATFORMS = {41: "ios", 42: "android"}


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


def endpoint_from_airflow(conn_id: str) -> HttpEndpoint:
    """Build the :class:`HttpEndpoint` of Airflow connection ``conn_id``.

    Base URL: ``schema`` (http or https, default http) + ``host`` + ``port``; a ``host`` that already
    holds a scheme (``https://api.example.com``) is used as is, like ``HttpHook`` does. Extras:
    ``endpoint`` (path, default ``/``), ``headers`` (object), ``token`` (sent as ``Authorization:
    Bearer``, and then login/password are not used); otherwise login/password mean HTTP basic auth.
    """
    from airflow.sdk import BaseHook  # heavy import, kept out of module scope

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and secrets backend errors alike
        raise ConfigError(f"Airflow connection {conn_id!r} is not usable: {exc}") from exc
    host = (conn.host or "").strip()
    if not host:
        raise ConfigError(f"connection {conn_id!r} has no host")
    if "://" in host:
        base = host.rstrip("/")
    else:
        scheme = (conn.schema or "http").strip().lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"connection {conn_id!r}: schema must be http or https, not {conn.schema!r}")
        base = f"{scheme}://{host}"
    if conn.port:
        base += f":{conn.port}"
    extra = conn.extra_dejson or {}
    endpoint = str(extra.get("endpoint") or "/")
    headers = extra.get("headers") or {}
    if isinstance(headers, str):  # an extra typed in the UI as a JSON string
        try:
            headers = json.loads(headers)
        except ValueError:
            headers = None
    if not isinstance(headers, dict):
        raise ConfigError(f'connection {conn_id!r}: extra "headers" must be a JSON object')
    headers = {str(k): str(v) for k, v in headers.items()}
    auth = None
    if extra.get("token"):
        headers["Authorization"] = f"Bearer {extra['token']}"
    elif conn.login:
        auth = (conn.login, conn.password or "")
    return HttpEndpoint(url=f"{base}/{endpoint.lstrip('/')}", headers=headers, auth=auth)


def request_body(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON document posted for one SMS (channel 1) or push (41 iOS, 42 Android) message."""
    if message.channel == SMS_CHANNEL:
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


class HttpTransport:
    """POST SMS and push messages to the JSON API described by an Airflow connection.

    ``with transport:`` reads the connection and opens one pooled ``httpx.Client`` (kept-alive
    connections) for the chunk. If the connection is missing or invalid, nothing is raised: every
    ``send`` answers ``TRANSIENT`` with the reason, so the events are retried later.

    :param http_conn_id: Airflow connection of the provider (see :func:`endpoint_from_airflow`).
    :param timeout: seconds allowed for each of connect, write, read (not for the whole request).
    """

    def __init__(self, http_conn_id: str, *, timeout: float = 10.0) -> None:
        self.http_conn_id = http_conn_id
        self.timeout = timeout
        self._endpoint: HttpEndpoint | None = None
        self._client: httpx.Client | None = None
        self._error: str | None = None

    def __enter__(self) -> HttpTransport:
        self._error = None
        try:
            self._endpoint = endpoint_from_airflow(self.http_conn_id)
        except ConfigError as exc:
            self._error = str(exc)
            log.warning("HTTP transport %r: %s", self.http_conn_id, exc)
            return self
        self._client = httpx.Client(
            timeout=self.timeout,
            headers={**self._endpoint.headers, "Accept": "application/json"},
            auth=self._endpoint.auth,
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def send(self, message: OutgoingMessage) -> SendResult:
        """POST one message; never raises for a delivery problem, the result says what happened."""
        if self._client is None or self._endpoint is None:
            error = self._error or "HttpTransport used outside `with transport:`"
            return SendResult(Outcome.TRANSIENT, error=truncate(error))
        try:
            body = json.dumps(request_body(message), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:  # unknown channel, data that is not JSON
            return SendResult(Outcome.PERMANENT, error=truncate(f"cannot build the request: {exc}"))
        try:
            response = self._client.post(
                self._endpoint.url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            return self._transient(message, f"timeout after {self.timeout:g}s: {type(exc).__name__} {exc}")
        except httpx.HTTPError as exc:  # ConnectError and the other TransportErrors, decoding errors
            return self._transient(message, f"{type(exc).__name__}: {exc}")
        outcome = classify_status(response.status_code)
        answer = truncate(response.text) or None
        extra: dict[str, Any] = {"http_status": response.status_code}
        if retry_after := response.headers.get("Retry-After"):
            extra["retry_after"] = retry_after
        if outcome is Outcome.SENT:
            return SendResult(
                outcome, message_id=_provider_message_id(response), provider_answer=answer, extra=extra
            )
        log.debug("event %s: HTTP %s -> %s", message.event_id, response.status_code, outcome.value)
        error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        return SendResult(outcome, provider_answer=answer, error=error, extra=extra)

    def _transient(self, message: OutgoingMessage, error: str) -> SendResult:
        log.debug("event %s: %s", message.event_id, error)
        return SendResult(Outcome.TRANSIENT, error=truncate(error))
