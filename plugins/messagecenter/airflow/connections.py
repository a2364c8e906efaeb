"""Reading Airflow connections: one lookup with one error, and the API tokens.

:func:`get_connection` is the one place a connection is looked up (metastore, ``AIRFLOW_CONN_*``
environment variable or secrets backend, whichever the process can see): a missing or unreadable
one becomes a :class:`ConfigError` that names it and says how to add it, so a task fails at once
(no retry helps) and the doctor shows the sentence. The API tokens are read (:func:`api_tokens`) and
compared (:func:`matching_token`) here too, for the REST API, the SOAP interface and the doctor.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import API_CONN_ID, Settings

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from messagecenter.feedback.mailbox import MailboxSettings


def get_connection(conn_id: str) -> Connection:
    """The Airflow connection ``conn_id``.

    :raises ConfigError: it is not defined, or the backend holding it cannot be read.
    """
    from airflow.sdk import BaseHook  # heavy import, kept out of module scope

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and secrets backend errors alike
        raise ConfigError(
            f"Airflow connection {conn_id!r} is not defined (add it in the UI, with "
            f"`airflow connections add`, or as AIRFLOW_CONN_{conn_id.upper()}): {exc}"
        ) from exc


def api_tokens(settings: Settings) -> tuple[str, ...]:
    """The API tokens: ``MC_API_TOKENS``, else the password of the ``mc_api`` connection
    (comma-separated); none when neither is set."""
    if settings.api_tokens:
        return settings.api_tokens
    try:
        password = get_connection(API_CONN_ID).password or ""
    except ConfigError:  # not defined: no token from there
        return ()
    return tuple(t.strip() for t in password.split(",") if t.strip())


def matching_token(tokens: tuple[str, ...], presented: str) -> str | None:
    """The API token equal to ``presented``, or ``None``. Every token is compared, in constant time,
    so the time taken does not reveal which one nearly matched."""
    given = presented.encode()
    found = None
    for token in tokens:
        if secrets.compare_digest(given, token.encode()):
            found = token
    return found


BOUNCE_MAILBOX_CONN_ID = "mc_bounce_mailbox"


def mailbox_settings(conn_id: str, settings: Settings) -> MailboxSettings:
    """The bounce mailbox of Airflow connection ``conn_id`` (type ``imap`` or ``pop3``).

    Host, port, login and password as usual; the schema is the IMAP folder (default ``INBOX``);
    extras ``ssl`` (IMAPS / POP3S), ``processed_folder``, ``unmatched_folder``, ``delete_done`` (IMAP:
    delete handled mails instead of moving them) and ``timeout`` (seconds).
    """
    from messagecenter.feedback.mailbox import MailboxSettings

    conn = get_connection(conn_id)
    protocol = (conn.conn_type or "").lower()
    if protocol not in ("imap", "pop3"):
        raise ConfigError(f"connection {conn_id!r} must be of type imap or pop3, not {conn.conn_type!r}")
    if not conn.host or not conn.login:
        raise ConfigError(f"connection {conn_id!r} needs a host and a login")
    extra = conn.extra_dejson or {}
    options: dict[str, Any] = {
        key: extra[key] for key in ("processed_folder", "unmatched_folder") if extra.get(key)
    }
    return MailboxSettings(
        protocol="imap" if protocol == "imap" else "pop3",
        host=conn.host,
        login=conn.login,
        password=conn.password or "",
        port=conn.port or None,
        ssl=_flag(extra.get("ssl", False)),
        folder=conn.schema or "INBOX",
        delete_done=_flag(extra.get("delete_done", False)),
        max_size=settings.feedback.bounce_max_bytes,
        timeout=float(extra.get("timeout") or 60),
        **options,
    )


def _flag(value: Any) -> bool:
    """A boolean extra, typed in the UI as JSON or as text."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes")
