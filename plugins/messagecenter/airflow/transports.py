"""Transports built from Airflow connections: ``mc_smtp`` (type smtp), ``mc_sms`` (smpp or http) and
``mc_push`` (http).

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
from messagecenter.delivery.smpp import DEFAULT_PORT, SmppConfig, SmppReceiver, SmppTransport

log = logging.getLogger(__name__)


def transport_for(channel: int) -> Transport:
    """The transport of a Campaign channel code (email 0, sms 1, ios 41, android 42), not yet opened."""
    if channel == Channel.EMAIL:
        return smtp_transport(settings.SMTP_CONN_ID)
    if channel == Channel.SMS:
        try:
            conn: Any = get_connection(settings.SMS_CONN_ID)
        except ConfigError:  # not defined: the HTTP transport says so when it opens
            conn = None
        if conn is not None and (conn.conn_type or "").lower() == "smpp":
            return smpp_transport(settings.SMS_CONN_ID, conn=conn)
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


def smpp_transport(conn_id: str = settings.SMS_CONN_ID, *, conn: Any = None) -> SmppTransport:
    """An :class:`SmppTransport` to the SMSC of Airflow connection ``conn_id`` (conn type ``smpp``;
    extras ``window``: submits unanswered per bind, default 10; ``max_connections``: binds per
    chunk, default 1; ``bind_mode``: ``transmitter`` (default) or ``transceiver``; ``deadline``,
    default 30; ``max_rate``; and the account's, see :func:`smpp_config_from_airflow`). The
    connection is read once here (a chunk builds one transport per message in flight)."""
    from messagecenter.airflow.connection_types import plain_extra

    try:
        conn = conn or get_connection(conn_id)
        config: SmppConfig | ConfigError = smpp_config_from_airflow(conn_id, conn)
    except ConfigError as exc:
        config = exc

    def read_config() -> SmppConfig:
        if isinstance(config, ConfigError):
            raise config
        return config

    extra = plain_extra(conn.extra_dejson or {}, conn.conn_type) if conn is not None else {}
    return SmppTransport(
        read_config,
        name=conn_id,
        binds=int(_number(conn_id, extra, "max_connections", 1, 0, 1000)),
        window=int(_number(conn_id, extra, "window", 10, 0, 1000)),
        deadline=_number(conn_id, extra, "deadline", 30.0, 0, 3600),
        max_rate=_number(conn_id, extra, "max_rate", None, 0, 1_000_000),
        bind_mode=str(extra.get("bind_mode") or "transmitter"),
    )


def smpp_receiver(conn_id: str = settings.SMS_CONN_ID) -> SmppReceiver:
    """The receipts' bind on the SMSC of ``conn_id`` (extra ``receipt_bind_mode``: ``receiver``,
    the default, or ``transceiver``)."""
    mode = str(_extra(conn_id).get("receipt_bind_mode") or "receiver")
    return SmppReceiver(lambda: smpp_config_from_airflow(conn_id), name=conn_id, mode=mode)


def smpp_config_from_airflow(conn_id: str, conn: Any = None) -> SmppConfig:
    """The SMSC account of Airflow connection ``conn_id``: host, port (default 2775), login (the
    ``system_id``), password; extras ``system_type``, ``source_addr``, ``source_addr_ton``,
    ``source_addr_npi``."""
    from messagecenter.airflow.connection_types import plain_extra

    conn = conn or get_connection(conn_id)
    if (conn.conn_type or "").lower() != "smpp":
        raise ConfigError(f"connection {conn_id!r} is of type {conn.conn_type!r}, not smpp")
    if not (conn.host or "").strip():
        raise ConfigError(f"connection {conn_id!r} has no host")
    extra = plain_extra(conn.extra_dejson or {}, conn.conn_type)

    def ton_npi(name: str) -> int | None:
        value = extra.get(name)
        return None if value is None else int(_number(conn_id, extra, name, None, -1, 255))

    return SmppConfig(
        host=(conn.host or "").strip(),
        port=int(conn.port or DEFAULT_PORT),
        system_id=conn.login or "",
        password=conn.password or "",
        system_type=str(extra.get("system_type") or ""),
        source_addr=str(extra.get("source_addr") or ""),
        source_addr_ton=ton_npi("source_addr_ton"),
        source_addr_npi=ton_npi("source_addr_npi"),
    )


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
    all workers, default none)."""
    return HttpTransport(
        lambda: endpoint_from_airflow(conn_id),
        name=conn_id,
        timeout=timeout,
        **_provider_limits(conn_id, deadline=30.0, max_connections=32),
    )


def endpoint_from_airflow(conn_id: str) -> HttpEndpoint:
    """Build the :class:`HttpEndpoint` of Airflow connection ``conn_id``.

    Base URL: ``schema`` (http or https, default http) + ``host`` + ``port``; a ``host`` that already
    holds a scheme (``https://api.example.com``) is used as is, like ``HttpHook`` does. Extras:
    ``endpoint`` (path, default ``/``), ``headers`` (object), ``token`` (sent as ``Authorization:
    Bearer``, and then login/password are not used); otherwise login/password mean HTTP basic auth.
    """
    from messagecenter.airflow.connection_types import plain_extra

    conn = get_connection(conn_id)
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
