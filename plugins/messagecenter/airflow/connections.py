"""Reading Airflow connections: one lookup with one error, and the API tokens.

:func:`get_connection` is the one place a connection is looked up (metastore, ``AIRFLOW_CONN_*``
environment variable or secrets backend, whichever the process can see): a missing or unreadable
one becomes a :class:`ConfigError` that names it and says how to add it, so a task fails at once
(no retry helps) and the doctor shows the sentence. The API tokens are read (:func:`api_tokens`) and
compared (:func:`matching_token`) here too, for the REST API, the SOAP interface and the doctor.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import API_CONN_ID, Settings

if TYPE_CHECKING:
    from airflow.sdk import Connection


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
