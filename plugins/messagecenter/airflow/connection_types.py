"""Message Center's own connection types in Airflow's "Add connection" form.

Installed as a package (``pip install .``), Message Center is also an Airflow provider: the
``apache_airflow_provider`` entry point names :func:`get_provider_info`, which declares three
connection types, each with labelled fields instead of raw extra JSON:

* ``messagecenter_execution``: an execution instance's database (``mc_execution``, ``mc_exec_<name>``),
  connected like ``postgres`` (host, port, login, password, Database), plus its instance id;
* ``messagecenter_smtp``: the e-mail provider (``mc_smtp``), what Airflow's ``SmtpHook`` reads plus
  the delivery limits;
* ``messagecenter_http``: an SMS or push provider (``mc_sms``, ``mc_push``).

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
from messagecenter.core.settings import DEFAULT_EXECUTION_CONN_ID, SMS_CONN_ID, SMTP_CONN_ID

EXECUTION_CONN_TYPE = "messagecenter_execution"
SMTP_CONN_TYPE = "messagecenter_smtp"
HTTP_CONN_TYPE = "messagecenter_http"
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


def _limits(deadline: int, max_connections: int) -> dict[str, dict[str, Any]]:
    """The delivery limits every provider connection has (``messagecenter.airflow.transports``)."""
    return {
        "max_connections": _field(
            "Max connections",
            "integer",
            f"Messages in flight per delivery chunk (default {max_connections}).",
            minimum=1,
            maximum=1000,
        ),
        "max_rate": _field(
            "Max rate (messages per second)",
            "number",
            "Across all workers of the instance; empty: no limit.",
            exclusiveMinimum=0,
        ),
        "deadline": _field(
            "Deadline (seconds)",
            "number",
            f"Most seconds one message may take, whatever the provider does (default {deadline}).",
            exclusiveMinimum=0,
            maximum=3600,
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
    **_limits(deadline=60, max_connections=10),
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
        "Default: the provider's (https://api.twilio.com, https://rest.nexmo.com).",
    ),
    "endpoint": _field("Endpoint path", "string", "Appended to the base URL (default /)."),
    "token": _field(
        "Bearer token",
        "string",
        "Sent as Authorization: Bearer; when set, login and password are not used.",
        format="password",
    ),
    "headers": _field("Headers", "object", "More request headers, a JSON object."),
    **_limits(deadline=30, max_connections=32),
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


__all__ = [
    "EXECUTION_CONN_TYPE",
    "HTTP_CONN_TYPE",
    "POSTGRES_CONN_TYPES",
    "SMTP_CONN_TYPE",
    "ExecutionInstanceHook",
    "HttpProviderHook",
    "SmtpProviderHook",
    "get_provider_info",
    "plain_extra",
]
