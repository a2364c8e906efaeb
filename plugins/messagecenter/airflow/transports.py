"""Transports built from Airflow connections: ``mc_smtp`` (type smtp), ``mc_sms`` and ``mc_push`` (http).

An ``http`` connection with extra ``provider`` ``twilio`` or ``vonage`` sends through that provider's
REST API (:func:`sms_api_from_airflow`); without it, through the generic JSON provider.
A connection is read when a delivery chunk opens its transport, never at import or DAG parse time.
"""

from __future__ import annotations

import json
import logging
import smtplib
from typing import Any

from messagecenter.airflow.connections import get_connection
from messagecenter.core import settings
from messagecenter.core.errors import ConfigError
from messagecenter.core.types import Channel
from messagecenter.delivery import HttpEndpoint, HttpTransport, SmtpClient, SmtpOpenError, SmtpTransport
from messagecenter.delivery.base import Transport
from messagecenter.delivery.http import HttpApi
from messagecenter.delivery.sms_rest import DEFAULT_BASE_URLS, SMS_APIS, SmsAccount

log = logging.getLogger(__name__)


def transport_for(channel: int) -> Transport:
    """The transport of a Campaign channel code (email 0, sms 1, ios 41, android 42), not yet opened."""
    if channel == Channel.EMAIL:
        return smtp_transport(settings.SMTP_CONN_ID)
    if channel == Channel.SMS:
        return http_transport(settings.SMS_CONN_ID)
    if channel in (Channel.IOS, Channel.ANDROID):
        return http_transport(settings.PUSH_CONN_ID)
    raise ValueError(f"no transport for channel {channel} (known: email 0, sms 1, ios 41, android 42)")


def smtp_transport(conn_id: str = settings.SMTP_CONN_ID, *, from_email: str | None = None) -> SmtpTransport:
    """An :class:`SmtpTransport` whose connections ``SmtpHook`` opens from Airflow connection ``conn_id``
    (extras ``from_email``, ``disable_ssl``, ``disable_tls``, ``timeout``, ``retry_limit`` as
    ``SmtpHook`` reads them; ``deadline``: most seconds for one message, default 60;
    ``max_connections``: a chunk's concurrency, default 10; ``max_rate``: messages per second
    across all workers, default none; ``return_path_domain``: the VERP bounce domain, used with
    ``MC_FEEDBACK_SECRET``)."""
    feedback = settings.get_settings().feedback
    return SmtpTransport(
        lambda: open_smtp_client(conn_id),
        name=conn_id,
        from_email=from_email,
        return_path_domain=_extra(conn_id).get("return_path_domain") or None,
        feedback_key=feedback.key,
        public_url=feedback.public_url or None,
        **_provider_limits(conn_id, deadline=60.0, max_connections=10),
    )


def _extra(conn_id: str) -> dict[str, Any]:
    """The connection's extras, the fields of a ``messagecenter_smtp`` / ``_http`` form too; none
    when it is not defined (the transport says so when it opens)."""
    from messagecenter.airflow.connection_types import plain_extra

    try:
        conn = get_connection(conn_id)
    except ConfigError:
        return {}
    return plain_extra(conn.extra_dejson or {}, conn.conn_type)


def _provider_limits(conn_id: str, *, deadline: float, max_connections: int) -> dict[str, Any]:
    """The extras every provider connection may set (``deadline``, ``max_connections``,
    ``max_rate``), checked, with the transport's defaults for those it leaves out."""
    extra = _extra(conn_id)
    return {
        "deadline": _number(conn_id, extra, "deadline", deadline, 0, 3600),
        "max_connections": int(_number(conn_id, extra, "max_connections", max_connections, 0, 1000)),
        "max_rate": _number(conn_id, extra, "max_rate", None, 0, 1_000_000),
    }


def _number(conn_id: str, extra: dict[str, Any], name: str, default: Any, low: float, high: float) -> Any:
    """The connection's extra ``name`` as a number in ``(low, high]``, else ``default``."""
    raw = extra.get(name, default)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"connection {conn_id!r}: extra {name!r} must be a number, got {raw!r}") from None
    if not low < value <= high:
        raise ConfigError(
            f"connection {conn_id!r}: extra {name!r} must be in ({low:g}, {high:g}], got {value:g}"
        )
    return value


def open_smtp_client(conn_id: str) -> SmtpClient:
    """Open and authenticate an SMTP client with ``SmtpHook``.

    :raises SmtpOpenError: holding whatever client the hook built before it failed, to be closed.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook  # heavy import, kept out of module scope

    # A fresh hook each time: after a failed get_conn() a hook may keep a half-open client and would
    # hand it back, unauthenticated, on the next call.
    hook = SmtpHook(conn_id)
    try:
        hook.get_conn()
    except Exception as exc:  # AirflowException (unknown connection, retries exhausted), OSError, SMTP*
        # get_conn() does not close a client it built before failing (e.g. at STARTTLS or login).
        half_open = hook._smtp_client if isinstance(hook._smtp_client, smtplib.SMTP) else None
        raise SmtpOpenError(str(exc), half_open) from exc
    # SmtpHook has no public accessor for its smtplib client; get_conn() stores it here.
    client = hook._smtp_client
    if not isinstance(client, smtplib.SMTP):  # SMTP_SSL is a subclass
        raise TypeError(f"SmtpHook returned an unexpected client {type(client).__name__}")
    return SmtpClient(client, hook.from_email)


def http_transport(conn_id: str, *, timeout: float = 10.0) -> HttpTransport:
    """An :class:`HttpTransport` posting to the provider of Airflow connection ``conn_id`` (extras
    ``deadline``: most seconds for a whole request, answer included, default 30;
    ``max_connections``: a chunk's concurrency, default 32; ``max_rate``: messages per second across
    all workers, default none; ``provider``: see :func:`http_api_from_airflow`)."""
    return HttpTransport(
        lambda: http_api_from_airflow(conn_id),
        name=conn_id,
        timeout=timeout,
        **_provider_limits(conn_id, deadline=30.0, max_connections=32),
    )


def http_api_from_airflow(conn_id: str) -> HttpApi:
    """The provider API of Airflow connection ``conn_id``: extra ``provider`` ``twilio`` or
    ``vonage`` (:func:`sms_api_from_airflow`), else the generic JSON provider
    (:func:`endpoint_from_airflow`)."""
    from messagecenter.airflow.connection_types import plain_extra

    conn = get_connection(conn_id)
    provider = str(plain_extra(conn.extra_dejson or {}, conn.conn_type).get("provider") or "").strip().lower()
    if not provider:
        return endpoint_from_airflow(conn_id)
    if provider not in SMS_APIS:
        raise ConfigError(
            f"connection {conn_id!r}: extra 'provider' must be one of {', '.join(SMS_APIS)}, not {provider!r}"
        )
    return sms_api_from_airflow(conn_id)


def sms_api_from_airflow(conn_id: str) -> HttpApi:
    """Twilio's or Vonage's REST API (extra ``provider``), as Airflow connection ``conn_id`` sets it.

    Login and password: Twilio's Account SID and auth token, or Vonage's API key and secret. Extras:
    ``from`` (the sender: a number or an alphanumeric id), ``messaging_service_sid`` (Twilio, instead
    of or with ``from``), ``base_url`` (default the provider's; else ``host`` / ``schema`` / ``port``
    as for the generic provider). Status callbacks go to ``MC_PUBLIC_URL``'s feedback webhook; without
    it none is asked for.
    """
    from messagecenter.airflow.connection_types import plain_extra

    conn = get_connection(conn_id)
    extra = plain_extra(conn.extra_dejson or {}, conn.conn_type)
    provider = str(extra.get("provider") or "").strip().lower()
    if provider not in SMS_APIS:
        raise ConfigError(f"connection {conn_id!r}: extra 'provider' must be one of {', '.join(SMS_APIS)}")
    base_url = str(extra.get("base_url") or "").strip()
    if base_url:
        if not base_url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"connection {conn_id!r}: extra 'base_url' must start with http:// or https://")
    elif (conn.host or "").strip():
        base_url = _base_url(conn_id, conn)
    else:
        base_url = DEFAULT_BASE_URLS[provider]
    account = SmsAccount(
        base_url=base_url,
        login=conn.login or "",
        secret=conn.password or "",
        sender=str(extra["from"]).strip() if extra.get("from") else None,
        messaging_service_sid=str(extra.get("messaging_service_sid") or "").strip() or None,
        public_url=settings.get_settings().feedback.public_url or None,
    )
    try:
        return SMS_APIS[provider](account)
    except ConfigError as exc:
        raise ConfigError(f"connection {conn_id!r}: {exc}") from None


def _base_url(conn_id: str, conn: Any) -> str:
    """``schema`` (http or https, default http) + ``host`` + ``port``; a ``host`` that already holds a
    scheme (``https://api.example.com``) is used as is, like ``HttpHook`` does."""
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
    return base


def endpoint_from_airflow(conn_id: str) -> HttpEndpoint:
    """Build the :class:`HttpEndpoint` of Airflow connection ``conn_id``.

    Base URL: ``schema`` (http or https, default http) + ``host`` + ``port``; a ``host`` that already
    holds a scheme (``https://api.example.com``) is used as is, like ``HttpHook`` does. Extras:
    ``endpoint`` (path, default ``/``), ``headers`` (object), ``token`` (sent as ``Authorization:
    Bearer``, and then login/password are not used); otherwise login/password mean HTTP basic auth.
    """
    from messagecenter.airflow.connection_types import plain_extra

    conn = get_connection(conn_id)
    base = _base_url(conn_id, conn)
    extra = plain_extra(conn.extra_dejson or {}, conn.conn_type)
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


def warm_up() -> None:
    """Import what the transports use and read their connections once, so the first real-time event
    does not wait a second or two for it (a drain calls this before it listens)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook  # noqa: F401

    for channel in Channel:
        try:
            transport_for(channel)
        except ConfigError as exc:  # reported again, in context, when a chunk needs the transport
            log.warning("Transport of channel %s: %s", channel.label, exc)
