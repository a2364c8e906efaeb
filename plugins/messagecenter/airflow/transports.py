"""Transports built from Airflow connections: ``mc_smtp`` (type smtp), ``mc_sms`` (smpp or http),
``mc_push`` (http), ``mc_push_android`` (type fcm) and ``mc_push_ios`` (type apns).

An ``http`` connection with extra ``provider`` ``twilio`` or ``vonage`` sends through that provider's
REST API (:func:`sms_api_from_airflow`); without it, through the generic JSON provider.
A connection is read when a delivery chunk opens its transport, never at import or DAG parse time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import smtplib
from typing import Any

from messagecenter.airflow.connections import get_connection
from messagecenter.core import settings
from messagecenter.core.errors import ConfigError
from messagecenter.core.providers import (
    APNS_BASE_URLS,
    APNS_ENVIRONMENT,
    APNS_MAX_TIME_TO_LIVE,
    APNS_TIME_TO_LIVE,
    FCM_BASE_URL,
    HTTP_LIMITS,
    MAX_CONNECTIONS,
    MAX_DEADLINE_SECONDS,
    MAX_RATE,
    SMPP_LIMITS,
    SMPP_MAX_PASSWORD,
    SMPP_MAX_SYSTEM_ID,
    SMPP_MAX_SYSTEM_TYPE,
    SMPP_PORT,
    SMPP_RECEIPT_BIND_MODES,
    SMPP_SEND_BIND_MODES,
    SMPP_WINDOW,
    SMTP_LIMITS,
    Limits,
)
from messagecenter.core.types import Channel
from messagecenter.delivery import HttpEndpoint, HttpTransport, SmtpClient, SmtpOpenError, SmtpTransport
from messagecenter.delivery.apns import ApnsAccount, ApnsTransport, pem_text
from messagecenter.delivery.base import Transport
from messagecenter.delivery.fcm import FcmAccount, FcmTransport
from messagecenter.delivery.http import HttpApi
from messagecenter.delivery.smpp import SmppConfig, SmppReceiver, SmppTransport
from messagecenter.delivery.sms_rest import DEFAULT_BASE_URLS, SMS_APIS, SmsAccount

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
        return push_transport(channel)
    raise ValueError(f"no transport for channel {channel} (known: email 0, sms 1, ios 41, android 42)")


def smtp_transport(conn_id: str = settings.SMTP_CONN_ID, *, from_email: str | None = None) -> SmtpTransport:
    """An :class:`SmtpTransport` whose connections ``SmtpHook`` opens from Airflow connection ``conn_id``
    (extras ``from_email``, ``disable_ssl``, ``disable_tls``, ``timeout``, ``retry_limit`` as
    ``SmtpHook`` reads them; ``deadline``: most seconds for one message; ``max_connections``: a
    chunk's concurrency (defaults: ``SMTP_LIMITS``); ``max_rate``: messages per second across all
    workers, default none; ``return_path_domain``: the VERP bounce domain, used with
    ``MC_FEEDBACK_SECRET``)."""
    feedback = settings.get_settings().feedback
    return SmtpTransport(
        lambda: open_smtp_client(conn_id),
        name=conn_id,
        from_email=from_email,
        return_path_domain=_extra(conn_id).get("return_path_domain") or None,
        feedback_key=feedback.key,
        public_url=feedback.public_url or None,
        **_provider_limits(conn_id, SMTP_LIMITS),
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


def _provider_limits(conn_id: str, defaults: Limits, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The extras every provider connection may set (``deadline``, ``max_connections``,
    ``max_rate``), checked, with the transport's ``defaults`` for those it leaves out."""
    extra = _extra(conn_id) if extra is None else extra
    return {
        "deadline": _number(conn_id, extra, "deadline", defaults.deadline, 0, MAX_DEADLINE_SECONDS),
        "max_connections": int(
            _number(conn_id, extra, "max_connections", defaults.max_connections, 0, MAX_CONNECTIONS)
        ),
        "max_rate": _number(conn_id, extra, "max_rate", None, 0, MAX_RATE),
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
    extras ``window``: submits unanswered per bind, default ``SMPP_WINDOW``; ``max_connections``:
    binds per chunk, and ``deadline`` (defaults: ``SMPP_LIMITS``); ``bind_mode``: ``transmitter``
    (default) or ``transceiver``; ``max_rate``; and the account's, see
    :func:`smpp_config_from_airflow`). The connection is read once here (a chunk builds one
    transport per message in flight)."""
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
    limits = _provider_limits(conn_id, SMPP_LIMITS, extra)
    return SmppTransport(
        read_config,
        name=conn_id,
        binds=limits["max_connections"],
        window=int(_number(conn_id, extra, "window", SMPP_WINDOW, 0, MAX_CONNECTIONS)),
        deadline=limits["deadline"],
        max_rate=limits["max_rate"],
        bind_mode=str(extra.get("bind_mode") or SMPP_SEND_BIND_MODES[0]),
    )


def smpp_receiver(conn_id: str = settings.SMS_CONN_ID) -> SmppReceiver:
    """The receipts' bind on the SMSC of ``conn_id`` (extra ``receipt_bind_mode``: ``receiver``,
    the default, or ``transceiver``)."""
    mode = str(_extra(conn_id).get("receipt_bind_mode") or SMPP_RECEIPT_BIND_MODES[0])
    return SmppReceiver(lambda: smpp_config_from_airflow(conn_id), name=conn_id, mode=mode)


def smpp_config_from_airflow(conn_id: str, conn: Any = None) -> SmppConfig:
    """The SMSC account of Airflow connection ``conn_id``: host, port (default ``SMPP_PORT``), login
    (the ``system_id``), password; extras ``system_type``, ``source_addr``, ``source_addr_ton``,
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

    system_id, password = conn.login or "", conn.password or ""
    system_type = str(extra.get("system_type") or "")
    for field, value, most in (
        ("login", system_id, SMPP_MAX_SYSTEM_ID),
        ("password", password, SMPP_MAX_PASSWORD),
        ("system_type", system_type, SMPP_MAX_SYSTEM_TYPE),
    ):
        if len(value.encode()) > most:  # a client library would cut it, and the SMSC refuse the bind
            raise ConfigError(f"connection {conn_id!r}: the SMPP {field} has at most {most} characters")
    return SmppConfig(
        host=(conn.host or "").strip(),
        port=int(conn.port or SMPP_PORT),
        system_id=system_id,
        password=password,
        system_type=system_type,
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
    ``deadline``: most seconds for a whole request, answer included; ``max_connections``: a chunk's
    concurrency (defaults: ``HTTP_LIMITS``); ``max_rate``: messages per second across all workers,
    default none; ``provider``: see :func:`http_api_from_airflow`)."""
    return HttpTransport(
        lambda: http_api_from_airflow(conn_id),
        name=conn_id,
        timeout=timeout,
        **_provider_limits(conn_id, HTTP_LIMITS),
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
    as for the generic provider); Vonage's signed requests: ``signature_secret`` (the account's
    signature secret: each request is signed with it and the API secret, then optional, is never
    sent) and ``signature_method`` (``md5hash``, the default, ``md5``, ``sha1``, ``sha256`` or
    ``sha512``: the account's setting). Status callbacks go to ``MC_PUBLIC_URL``'s feedback webhook;
    without it none is asked for.
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
        **_signing(conn_id, extra),
    )
    try:
        return SMS_APIS[provider](account)
    except ConfigError as exc:
        raise ConfigError(f"connection {conn_id!r}: {exc}") from None


def _signing(conn_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The extras ``signature_secret`` and ``signature_method`` (Vonage's signed requests)."""
    secret = str(extra.get("signature_secret") or "")
    method = str(extra.get("signature_method") or "").strip().lower()
    if method and not secret:
        raise ConfigError(f"connection {conn_id!r}: extra 'signature_method' needs 'signature_secret'")
    return {"signature_secret": secret or None, **({"signature_method": method} if method else {})}


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


# A platform's own push connection, used when it is defined (else the generic mc_push).
PUSH_CONN_IDS = {Channel.ANDROID: settings.ANDROID_PUSH_CONN_ID, Channel.IOS: settings.IOS_PUSH_CONN_ID}


def push_connection(channel: int) -> tuple[str, str]:
    """The connection that serves push ``channel`` (ios 41, android 42), and its conn type (lower
    case): its platform's connection if it is defined, else the generic ``mc_push`` (``http``)."""
    conn_id = PUSH_CONN_IDS[Channel(channel)]
    try:
        return conn_id, (get_connection(conn_id).conn_type or "").lower()
    except ConfigError:
        return settings.PUSH_CONN_ID, "http"


def push_transport(channel: int) -> Transport:
    """The push transport of ``channel`` (ios 41, android 42), by the conn type of the connection
    that serves it (:func:`push_connection`): ``fcm`` Firebase, ``apns`` Apple, else the generic
    JSON provider."""
    conn_id, conn_type = push_connection(channel)
    if conn_type == "fcm":
        return fcm_transport(conn_id)
    if conn_type == "apns":
        return apns_transport(conn_id)
    return http_transport(conn_id)


def fcm_transport(conn_id: str = PUSH_CONN_IDS[Channel.ANDROID], *, timeout: float = 10.0) -> FcmTransport:
    """An :class:`FcmTransport` of Airflow connection ``conn_id`` (see :func:`fcm_account_from_airflow`;
    extras ``deadline``, ``max_connections`` (defaults: ``HTTP_LIMITS``), ``max_rate`` default none)."""
    return FcmTransport(
        lambda: fcm_account_from_airflow(conn_id),
        name=conn_id,
        timeout=timeout,
        **_provider_limits(conn_id, HTTP_LIMITS),
    )


def fcm_account_from_airflow(conn_id: str) -> FcmAccount:
    """The :class:`FcmAccount` of connection ``conn_id`` (type ``fcm``): the service account's JSON
    key in the password or extra ``service_account``; extras ``project_id`` (default: the key's),
    ``base_url`` (default FCM's), ``ca_file``."""
    from messagecenter.airflow.connection_types import plain_extra

    conn = get_connection(conn_id)
    extra = plain_extra(conn.extra_dejson or {}, conn.conn_type)
    raw = conn.password or extra.get("service_account")
    if not raw:
        raise ConfigError(
            f"connection {conn_id!r} has no service account key (its JSON in the password or in "
            'extra "service_account")'
        )
    try:
        info = raw if isinstance(raw, dict) else json.loads(raw)
    except ValueError:
        info = None
    if not isinstance(info, dict) or not info.get("private_key") or not info.get("client_email"):
        raise ConfigError(f"connection {conn_id!r}: the service account key is not a JSON key file's content")
    project_id = str(extra.get("project_id") or info.get("project_id") or "")
    if not project_id:
        raise ConfigError(f'connection {conn_id!r} has no extra "project_id"')
    return FcmAccount(
        project_id=project_id,
        service_account=info,
        base_url=str(extra.get("base_url") or FCM_BASE_URL),
        ca_file=extra.get("ca_file") or None,
    )


def apns_transport(conn_id: str = PUSH_CONN_IDS[Channel.IOS], *, timeout: float = 10.0) -> ApnsTransport:
    """An :class:`ApnsTransport` of Airflow connection ``conn_id`` (see
    :func:`apns_account_from_airflow`; extras ``deadline``, ``max_connections`` (defaults:
    ``HTTP_LIMITS``), ``max_rate`` default none)."""
    return ApnsTransport(
        lambda: apns_account_from_airflow(conn_id),
        name=conn_id,
        timeout=timeout,
        **_provider_limits(conn_id, HTTP_LIMITS),
    )


def apns_account_from_airflow(conn_id: str) -> ApnsAccount:
    """The :class:`ApnsAccount` of connection ``conn_id`` (type ``apns``): the ``.p8`` key's PEM text
    in the password (or extra ``private_key``; see :func:`~messagecenter.delivery.apns.pem_text`);
    extras ``team_id``, ``key_id``, ``topic`` (the bundle id), ``environment`` (``production``, the
    default, or ``sandbox``), ``base_url`` (instead of the environment's), ``ca_file``,
    ``time_to_live`` (seconds APNs keeps a message for an offline device, default
    ``APNS_TIME_TO_LIVE``; 0: only now)."""
    from messagecenter.airflow.connection_types import plain_extra

    conn = get_connection(conn_id)
    extra = plain_extra(conn.extra_dejson or {}, conn.conn_type)
    missing = [name for name in ("team_id", "key_id", "topic") if not extra.get(name)]
    if missing:
        raise ConfigError(f"connection {conn_id!r} has no extra {', '.join(map(repr, missing))}")
    key = pem_text(str(conn.password or extra.get("private_key") or ""))
    if "PRIVATE KEY" not in key:
        raise ConfigError(f"connection {conn_id!r} has no private key (the .p8 key's PEM in the password)")
    environment = str(extra.get("environment") or APNS_ENVIRONMENT).lower()
    if environment not in APNS_BASE_URLS:
        raise ConfigError(
            f"connection {conn_id!r}: environment must be production or sandbox, not {environment!r}"
        )
    return ApnsAccount(
        team_id=str(extra["team_id"]),
        key_id=str(extra["key_id"]),
        topic=str(extra["topic"]),
        private_key=key,
        base_url=str(extra.get("base_url") or APNS_BASE_URLS[environment]),
        ca_file=extra.get("ca_file") or None,
        time_to_live=int(
            _number(conn_id, extra, "time_to_live", APNS_TIME_TO_LIVE, -1, APNS_MAX_TIME_TO_LIVE)
        ),
    )


def warm_up() -> None:
    """Import what the transports use and read their connections once, so the first real-time event
    does not wait a second or two for it (a drain calls this before it listens)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook  # noqa: F401

    with contextlib.suppress(ImportError):  # the push connectors' libraries (FCM, APNs)
        import google.oauth2.service_account  # noqa: F401
        import h2.connection  # noqa: F401
    for channel in Channel:
        try:
            transport_for(channel)
        except ConfigError as exc:  # reported again, in context, when a chunk needs the transport
            log.warning("Transport of channel %s: %s", channel.label, exc)
