"""Message Center's own connection types in Airflow's "Add connection" form.

Installed as a package (``pip install .``), Message Center is also an Airflow provider: the
``apache_airflow_provider`` entry point names :func:`get_provider_info`, which declares six
connection types, each with labelled fields instead of raw extra JSON:

* ``messagecenter_execution``: an execution instance's database (``mc_execution``, ``mc_exec_<name>``),
  connected like ``postgres`` (host, port, login, password, Database), plus its instance id;
* ``messagecenter_smtp``: the e-mail provider (``mc_smtp``), what Airflow's ``SmtpHook`` reads plus
  the delivery limits;
* ``messagecenter_http``: an SMS or push provider over HTTP (``mc_sms``, ``mc_push``): the generic
  JSON API, Twilio or Vonage;
* ``smpp``: an SMSC (``mc_sms``); ``fcm``: Firebase Cloud Messaging (``mc_push_android``); ``apns``:
  the Apple Push Notification service (``mc_push_ios``): the type names the transports read.

What a field left empty stands for is declared once, in :mod:`messagecenter.core.providers`: the
transports use those defaults and the forms' descriptions state them.

Airflow 3.3 builds the form from the ``conn-fields`` and ``ui-field-behaviour`` declared here,
without importing the hooks (a hook's ``get_connection_form_widgets`` is deprecated since 3.2 and
needs Flask-AppBuilder, which Airflow 3 no longer installs). The form saves each field under its own
name in ``extra`` (``{"instance_id": 3}``); Airflow 2's form saved ``extra__<type>__<field>``, which
:func:`plain_extra` also reads. The ``postgres``, ``smtp`` and ``http`` types keep working.

Airflow loads this module while it lists providers, which can happen while ``airflow`` itself is
being imported: so it imports nothing of Airflow (and little else) at load time. The hooks are shaped
like Airflow's (``conn_name_attr``, ``conn_type``, ``hook_name``, ``get_conn``, ``test_connection``),
which is all Airflow asks of them, without subclassing ``BaseHook``.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Mapping
from typing import Any

from messagecenter import __version__
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
    SMPP_PORT,
    SMPP_RECEIPT_BIND_MODES,
    SMPP_SEND_BIND_MODES,
    SMPP_WINDOW,
    SMTP_LIMITS,
    TWILIO_BASE_URL,
    VONAGE_BASE_URL,
    Limits,
)
from messagecenter.core.settings import (
    ANDROID_PUSH_CONN_ID,
    DEFAULT_EXECUTION_CONN_ID,
    IOS_PUSH_CONN_ID,
    SMS_CONN_ID,
    SMTP_CONN_ID,
)

EXECUTION_CONN_TYPE = "messagecenter_execution"
SMTP_CONN_TYPE = "messagecenter_smtp"
HTTP_CONN_TYPE = "messagecenter_http"
SMPP_CONN_TYPE = "smpp"
FCM_CONN_TYPE = "fcm"
APNS_CONN_TYPE = "apns"
# Connection types a Message Center database connection may have.
POSTGRES_CONN_TYPES = frozenset({"postgres", "postgresql", EXECUTION_CONN_TYPE})


def plain_extra(extra: Mapping[str, Any], conn_type: str | None) -> dict[str, Any]:
    """A connection's extra with every field under its plain name and empty fields left out.

    The form of Airflow 3 saves ``{"max_rate": 50}`` and ``null`` for a field left empty; Airflow 2's
    saved ``{"extra__<conn_type>__max_rate": 50}``. A plain key wins over a prefixed one.
    """
    prefix = f"extra__{conn_type}__"
    fields: dict[str, Any] = {}
    for key, value in extra.items():
        if value is None or value == "":
            continue
        name = key.removeprefix(prefix)
        if name == key or name not in fields:
            fields[name] = value
    return fields


# --- The form: one field definition per extra, in the order the form shows them -------------------


def _field(label: str, kind: str, description: str, **schema: Any) -> dict[str, Any]:
    """An optional field (``null`` when left empty) of JSON type ``kind``."""
    return {"label": label, "schema": {"type": [kind, "null"], **schema}, "description": description}


def _limits(
    defaults: Limits, *, in_flight: str = "Messages in flight per delivery chunk"
) -> dict[str, dict[str, Any]]:
    """The delivery limits every provider connection has, with the transport's ``defaults``."""
    return {
        "max_connections": _field(
            "Max connections",
            "integer",
            f"{in_flight} (default {defaults.max_connections}).",
            minimum=1,
            maximum=MAX_CONNECTIONS,
        ),
        "max_rate": _field(
            "Max rate (messages per second)",
            "number",
            "Across all workers of the instance; empty: no limit.",
            exclusiveMinimum=0,
            maximum=MAX_RATE,
        ),
        "deadline": _field(
            "Deadline (seconds)",
            "number",
            f"Most seconds one message may take, whatever the provider does (default {defaults.deadline:g}).",
            exclusiveMinimum=0,
            maximum=MAX_DEADLINE_SECONDS,
        ),
    }


EXECUTION_FIELDS: dict[str, dict[str, Any]] = {
    "instance_id": {
        "label": "Instance id",
        # Not nullable: the form requires it.
        "schema": {"type": "integer", "minimum": 1, "maximum": 255},
        "description": "1..255, unique per execution instance: the high byte of every event id it assigns.",
    },
    "sslmode": _field(
        "SSL mode",
        "string",
        "libpq sslmode; empty: libpq's default (prefer).",
        enum=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
    ),
    "connect_timeout": _field("Connect timeout (seconds)", "integer", "libpq connect_timeout.", minimum=1),
}

SMTP_FIELDS: dict[str, dict[str, Any]] = {
    "from_email": _field("From address", "string", "Sender of messages whose template sets none."),
    # The four below are read by Airflow's SmtpHook, with its defaults.
    "disable_ssl": _field("Disable SSL", "boolean", "SMTP (or STARTTLS), not SMTPS.", default=False),
    "disable_tls": _field("Disable STARTTLS", "boolean", "Do not upgrade a plain connection.", default=False),
    # Required: SmtpHook fails on an empty (null) one.
    "timeout": {
        "label": "Connection timeout (seconds)",
        "schema": {"type": "integer", "minimum": 1, "default": 30},
        "description": "Opening the connection.",
    },
    "retry_limit": {
        "label": "Connection retries",
        "schema": {"type": "integer", "minimum": 0, "default": 5},
        "description": "Attempts to open the connection.",
    },
    "return_path_domain": _field(
        "Return-path domain (VERP)",
        "string",
        "With MC_FEEDBACK_SECRET set, each message's envelope sender is a signed address on this "
        "domain naming its event, so a bounce finds it; empty: the sender's address.",
    ),
    **_limits(SMTP_LIMITS),
}

HTTP_FIELDS: dict[str, dict[str, Any]] = {
    "provider": _field(
        "Provider",
        "string",
        "twilio or vonage: that provider's REST API (login/password: Account SID and auth token, "
        "or API key and secret); empty: the generic JSON API.",
        enum=["twilio", "vonage"],
    ),
    "from": _field("Sender (Twilio, Vonage)", "string", "A number (E.164) or an alphanumeric sender id."),
    "messaging_service_sid": _field(
        "Messaging Service SID (Twilio)",
        "string",
        "Sends through this service, instead of or with the sender.",
    ),
    "signature_secret": _field(
        "Signature secret (Vonage)",
        "string",
        "Signs each request (signed requests) instead of sending the API secret.",
        format="password",
    ),
    "signature_method": _field(
        "Signature method (Vonage)",
        "string",
        "The account's signing algorithm (default md5hash).",
        enum=["md5hash", "md5", "sha1", "sha256", "sha512"],
    ),
    "base_url": _field(
        "Base URL (Twilio, Vonage)",
        "string",
        f"Default: the provider's ({TWILIO_BASE_URL}, {VONAGE_BASE_URL}).",
    ),
    "endpoint": _field("Endpoint path", "string", "Appended to the base URL (default /)."),
    "token": _field(
        "Bearer token",
        "string",
        "Sent as Authorization: Bearer; when set, login and password are not used.",
        format="password",
    ),
    "headers": _field("Headers", "object", "More request headers, a JSON object."),
    **_limits(HTTP_LIMITS),
}

SMPP_FIELDS: dict[str, dict[str, Any]] = {
    "system_type": _field(
        "System type", "string", "Sent with the bind, if the SMSC asks for one; empty: none.", maxLength=12
    ),
    "source_addr": _field(
        "Sender (source_addr)",
        "string",
        "A short code, a number (+ and digits) or an alphanumeric name (at most 11 characters); "
        "empty: the SMSC's default.",
        maxLength=20,
    ),
    "source_addr_ton": _field(
        "Sender type of number (TON)",
        "integer",
        "0 unknown, 1 international, 2 national, 3 network specific, 5 alphanumeric; empty: from the "
        "sender (5 for a name, 1 for + or more than 8 digits, 3 for a short code).",
        minimum=0,
        maximum=255,
    ),
    "source_addr_npi": _field(
        "Sender numbering plan (NPI)",
        "integer",
        "0 unknown, 1 E.164; empty: from the sender (0 for a name, else 1).",
        minimum=0,
        maximum=255,
    ),
    "window": _field(
        "Window",
        "integer",
        f"submit_sm unanswered at once on each bind (default {SMPP_WINDOW}).",
        minimum=1,
        maximum=MAX_CONNECTIONS,
    ),
    "bind_mode": _field(
        "Sending bind mode",
        "string",
        f"Default {SMPP_SEND_BIND_MODES[0]}: receipts go to the receiver bind of smsReceipts; "
        "transceiver for an SMSC that accepts nothing else.",
        enum=list(SMPP_SEND_BIND_MODES),
    ),
    "receipt_bind_mode": _field(
        "Receipt bind mode",
        "string",
        f"The bind of smsReceipts (default {SMPP_RECEIPT_BIND_MODES[0]}).",
        enum=list(SMPP_RECEIPT_BIND_MODES),
    ),
    **_limits(SMPP_LIMITS, in_flight="Binds per delivery chunk, each with its window of messages"),
}

FCM_FIELDS: dict[str, dict[str, Any]] = {
    "project_id": _field("Project id", "string", "The Firebase project; default: the key's project_id."),
    "base_url": _field("Base URL", "string", f"FCM's address (default {FCM_BASE_URL})."),
    "ca_file": _field(
        "CA bundle (file path)",
        "string",
        "On every worker: a CA bundle to trust instead of the system's (a TLS-intercepting proxy).",
    ),
    **_limits(HTTP_LIMITS),
}

APNS_FIELDS: dict[str, dict[str, Any]] = {
    # Required: the transport cannot sign or address anything without them.
    "team_id": {
        "label": "Team id",
        "schema": {"type": "string", "minLength": 1},
        "description": "The Apple developer team (Membership details): the provider token's issuer.",
    },
    "key_id": {
        "label": "Key id",
        "schema": {"type": "string", "minLength": 1},
        "description": "The signing key's id (Certificates, Identifiers & Profiles → Keys).",
    },
    "topic": {
        "label": "Topic (bundle id)",
        "schema": {"type": "string", "minLength": 1},
        "description": "The app's bundle id, e.g. com.example.shop.",
    },
    "environment": _field(
        "Environment",
        "string",
        f"Default {APNS_ENVIRONMENT}; sandbox for development builds of the app.",
        enum=list(APNS_BASE_URLS),
    ),
    "base_url": _field("Base URL", "string", "Instead of the environment's (a test server)."),
    "ca_file": _field(
        "CA bundle (file path)", "string", "On every worker: a CA bundle to trust instead of the system's."
    ),
    "time_to_live": _field(
        "Time to live (seconds)",
        "integer",
        f"How long APNs keeps a message for a device that is offline (default {APNS_TIME_TO_LIVE}, "
        "a day); 0: deliver now or never.",
        minimum=0,
        maximum=APNS_MAX_TIME_TO_LIVE,
    ),
    **_limits(HTTP_LIMITS),
}


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ``ProvidersManager`` reads from the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "messagecenter",
        "name": "Message Center",
        "description": "Transactional messaging (Adobe Campaign Classic Message Center) on Airflow.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": EXECUTION_CONN_TYPE,
                "hook-class-name": f"{__name__}.ExecutionInstanceHook",
                "hook-name": ExecutionInstanceHook.hook_name,
                "conn-fields": EXECUTION_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Database"},
                    "placeholders": {"host": "localhost", "port": "5432", "schema": "messagecenter"},
                },
            },
            {
                "connection-type": SMTP_CONN_TYPE,
                "hook-class-name": f"{__name__}.SmtpProviderHook",
                "hook-name": SmtpProviderHook.hook_name,
                "conn-fields": SMTP_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {},
                    "placeholders": {"host": "smtp.example.com", "port": "587"},
                },
            },
            {
                "connection-type": HTTP_CONN_TYPE,
                "hook-class-name": f"{__name__}.HttpProviderHook",
                "hook-name": HttpProviderHook.hook_name,
                "conn-fields": HTTP_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Scheme"},
                    "placeholders": {"host": "sms.example.com", "schema": "https"},
                },
            },
            {
                "connection-type": SMPP_CONN_TYPE,
                "hook-class-name": f"{__name__}.SmppProviderHook",
                "hook-name": SmppProviderHook.hook_name,
                "conn-fields": SMPP_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {"login": "System id"},
                    "placeholders": {"host": "smsc.example.com", "port": str(SMPP_PORT), "login": "shop"},
                },
            },
            {
                "connection-type": FCM_CONN_TYPE,
                "hook-class-name": f"{__name__}.FcmProviderHook",
                "hook-name": FcmProviderHook.hook_name,
                "conn-fields": FCM_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "login", "schema"],
                    "relabeling": {"password": "Service account key (JSON)"},
                    "placeholders": {"password": '{"type": "service_account", "project_id": ...}'},
                },
            },
            {
                "connection-type": APNS_CONN_TYPE,
                "hook-class-name": f"{__name__}.ApnsProviderHook",
                "hook-name": ApnsProviderHook.hook_name,
                "conn-fields": APNS_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "login", "schema"],
                    "relabeling": {"password": "Signing key (.p8 PEM)"},
                    "placeholders": {"password": "-----BEGIN PRIVATE KEY-----..."},
                },
            },
        ],
    }


# --- The hooks: what Airflow instantiates for a connection of each type (e.g. "Test") ------------


class ExecutionInstanceHook:
    """An execution instance's database; connects like ``postgres`` (``schema`` is the database)."""

    conn_name_attr = "mc_conn_id"
    default_conn_name = DEFAULT_EXECUTION_CONN_ID
    conn_type = EXECUTION_CONN_TYPE
    hook_name = "Message Center execution instance"

    def __init__(self, mc_conn_id: str = DEFAULT_EXECUTION_CONN_ID) -> None:
        self.mc_conn_id = mc_conn_id

    def get_conn(self) -> Any:
        """A new psycopg 3 connection (the caller closes it)."""
        from messagecenter.airflow.hooks import MessageCenterDbHook

        return MessageCenterDbHook(self.mc_conn_id).get_conn()

    def test_connection(self) -> tuple[bool, str]:
        """The "Test" button: a valid instance id, the database reachable and migrated."""
        from messagecenter.airflow.hooks import instance_id_of
        from messagecenter.db import schema

        try:
            instance_id = instance_id_of(self.mc_conn_id)
            with self.get_conn() as conn:
                version = schema.current_version(conn, "execution")
        except Exception as exc:  # the message is the answer
            return False, str(exc)
        if not version:
            return False, (
                "the database has no Message Center schema: "
                f"python -m messagecenter db upgrade --conn {self.mc_conn_id}"
            )
        return True, f"instance {instance_id}, execution schema version {version}"


class SmtpProviderHook:
    """The e-mail provider: Airflow's ``SmtpHook`` opens its connections."""

    conn_name_attr = "smtp_conn_id"
    default_conn_name = SMTP_CONN_ID
    conn_type = SMTP_CONN_TYPE
    hook_name = "Message Center SMTP provider"

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID) -> None:
        self.smtp_conn_id = smtp_conn_id

    def get_conn(self) -> Any:
        """An open, authenticated :class:`~messagecenter.delivery.SmtpClient` (the caller closes it)."""
        from messagecenter.airflow.transports import open_smtp_client

        return open_smtp_client(self.smtp_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """The "Test" button: open and authenticate a connection, then close it."""
        from messagecenter.airflow.transports import smtp_transport

        try:
            smtp_transport(self.smtp_conn_id)  # checks the limits
            opened = self.get_conn()
        except Exception as exc:
            half_open = getattr(exc, "client", None)  # SmtpOpenError
            if half_open is not None:
                half_open.close()
            return False, str(exc)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            opened.client.quit()
        return True, "connected and authenticated"


class HttpProviderHook:
    """An SMS or push provider, reached with JSON POSTs."""

    conn_name_attr = "http_conn_id"
    default_conn_name = SMS_CONN_ID
    conn_type = HTTP_CONN_TYPE
    hook_name = "Message Center SMS / push provider"

    def __init__(self, http_conn_id: str = SMS_CONN_ID) -> None:
        self.http_conn_id = http_conn_id

    def get_conn(self) -> Any:
        """The provider's :class:`~messagecenter.delivery.http.HttpApi` (URL, headers, auth)."""
        from messagecenter.airflow.transports import http_api_from_airflow

        return http_api_from_airflow(self.http_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """The "Test" button: the settings are valid (nothing is sent: a provider would deliver it)."""
        from messagecenter.airflow.transports import http_transport

        try:
            http_transport(self.http_conn_id)  # checks the limits
            endpoint = self.get_conn()
        except Exception as exc:
            return False, str(exc)
        return True, f"valid; messages are posted to {endpoint.url}"


class SmppProviderHook:
    """An SMSC reached over SMPP 3.4 (``mc_sms`` of type ``smpp``)."""

    conn_name_attr = "smpp_conn_id"
    default_conn_name = SMS_CONN_ID
    conn_type = SMPP_CONN_TYPE
    hook_name = "Message Center SMPP (SMSC)"

    def __init__(self, smpp_conn_id: str = SMS_CONN_ID) -> None:
        self.smpp_conn_id = smpp_conn_id

    def get_conn(self) -> Any:
        """The SMSC account the transport binds with (an ``SmppConfig``)."""
        from messagecenter.airflow.transports import smpp_config_from_airflow

        return smpp_config_from_airflow(self.smpp_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """The "Test" button: bind as the transport does (its bind mode) and unbind; nothing is
        submitted. The receipts' bind is not tried: an SMSC may allow one, held by ``smsReceipts``."""
        from messagecenter.airflow.transports import smpp_receiver, smpp_transport
        from messagecenter.delivery.smpp import SmppUnavailable, try_bind

        try:
            mode = smpp_transport(self.smpp_conn_id).bind_mode  # checks the limits and the bind mode
            smpp_receiver(self.smpp_conn_id)  # checks the receipts' bind mode
            config = self.get_conn()
            smsc = try_bind(config, name=self.smpp_conn_id, mode=mode)
        except (ConfigError, SmppUnavailable, ValueError) as exc:
            return False, str(exc)
        return True, (
            f"bound to {smsc or 'the SMSC'} at {config.host}:{config.port} as {mode} "
            f"{config.system_id!r}, then unbound; nothing submitted"
        )


class FcmProviderHook:
    """Firebase Cloud Messaging HTTP v1 (``mc_push_android`` of type ``fcm``)."""

    conn_name_attr = "fcm_conn_id"
    default_conn_name = ANDROID_PUSH_CONN_ID
    conn_type = FCM_CONN_TYPE
    hook_name = "Message Center FCM (Firebase push)"

    def __init__(self, fcm_conn_id: str = ANDROID_PUSH_CONN_ID) -> None:
        self.fcm_conn_id = fcm_conn_id

    def get_conn(self) -> Any:
        """The project and service account the transport sends as (an ``FcmAccount``)."""
        from messagecenter.airflow.transports import fcm_account_from_airflow

        return fcm_account_from_airflow(self.fcm_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """The "Test" button: obtain an OAuth2 access token with the service account, as the
        transport does; nothing is sent (a message needs a device's token, and would arrive)."""
        from google.auth.exceptions import GoogleAuthError

        from messagecenter.airflow.transports import fcm_transport
        from messagecenter.delivery.fcm import AccessTokens, ssl_context

        try:
            fcm_transport(self.fcm_conn_id)  # checks the limits
            account = self.get_conn()
            # Tokens of its own, not the process's shared ones: a token fetched earlier proves nothing.
            tokens = AccessTokens(account.service_account, verify=ssl_context(account.ca_file))
        except ConfigError as exc:
            return False, str(exc)
        except ValueError as exc:  # google-auth cannot read the key
            return False, f"the service account key cannot be used: {exc}"
        except OSError as exc:  # the CA bundle
            return False, f"extra ca_file: {exc}"
        try:
            tokens.get()
        except GoogleAuthError as exc:
            token_uri = account.service_account.get("token_uri")
            return False, f"no access token from {token_uri}: {_auth_error(exc)}"
        email = account.service_account.get("client_email")
        return True, (
            f"access token obtained for {email}, project {account.project_id!r}; nothing sent "
            f"(messages go to {account.send_url})"
        )


class ApnsProviderHook:
    """The Apple Push Notification service with a token signing key (``mc_push_ios`` of type ``apns``)."""

    conn_name_attr = "apns_conn_id"
    default_conn_name = IOS_PUSH_CONN_ID
    conn_type = APNS_CONN_TYPE
    hook_name = "Message Center APNs (Apple push)"

    def __init__(self, apns_conn_id: str = IOS_PUSH_CONN_ID) -> None:
        self.apns_conn_id = apns_conn_id

    def get_conn(self) -> Any:
        """The team, key and app the transport sends as (an ``ApnsAccount``)."""
        from messagecenter.airflow.transports import apns_account_from_airflow

        return apns_account_from_airflow(self.apns_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """The "Test" button: the key signs a provider token, as the transport does. APNs has no call
        that checks a token without pushing to a device, so Apple is not contacted."""
        from messagecenter.airflow.transports import apns_transport
        from messagecenter.delivery.apns import ProviderTokens

        try:
            import h2  # noqa: F401  # HTTP/2, which APNs requires

            apns_transport(self.apns_conn_id)  # checks the limits
            account = self.get_conn()
            ProviderTokens(account.team_id, account.key_id, account.private_key).get()
        except ImportError as exc:
            return False, f"HTTP/2 support is not installed ({exc}): pip install h2"
        except (ConfigError, ValueError) as exc:
            return False, str(exc)
        return True, (
            f"the key signs provider tokens (team {account.team_id}, key {account.key_id}, topic "
            f"{account.topic}, {account.base_url}); Apple is not contacted: only a message to a "
            "device shows that it accepts the key"
        )


def _auth_error(exc: Exception) -> str:
    """google-auth's error as one line (its ``RefreshError`` carries the endpoint's answer too)."""
    first = exc.args[0] if exc.args else exc
    return str(first) or type(exc).__name__


__all__ = [
    "APNS_CONN_TYPE",
    "EXECUTION_CONN_TYPE",
    "FCM_CONN_TYPE",
    "HTTP_CONN_TYPE",
    "POSTGRES_CONN_TYPES",
    "SMPP_CONN_TYPE",
    "SMTP_CONN_TYPE",
    "ApnsProviderHook",
    "ExecutionInstanceHook",
    "FcmProviderHook",
    "HttpProviderHook",
    "SmppProviderHook",
    "SmtpProviderHook",
    "get_provider_info",
    "plain_extra",
]
