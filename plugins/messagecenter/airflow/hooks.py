"""Database access: psycopg 3 connections built from Airflow connections.

The hook resolves an Airflow connection (metastore, ``AIRFLOW_CONN_*`` env var or secrets backend,
whichever the process can see) lazily, on first use, and turns its fields into a libpq conninfo.
The store works on plain psycopg 3 connections so it does not care which driver ``PostgresHook``
would have picked.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from messagecenter.airflow.connections import get_connection
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import DEFAULT_EXECUTION_CONN_ID

# libpq parameters an operator may set in the connection's extra JSON.
_LIBPQ_EXTRAS = frozenset(
    {
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "connect_timeout",
        "options",
        "application_name",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
        "gssencmode",
    }
)


def conninfo_from_airflow(conn_id: str) -> str:
    """Return the libpq conninfo of Airflow connection ``conn_id`` (type ``postgres``, or
    ``messagecenter_execution`` as the "Add connection" form saves an execution instance)."""
    from messagecenter.airflow.connection_types import EXECUTION_CONN_TYPE, POSTGRES_CONN_TYPES, plain_extra

    conn = get_connection(conn_id)
    if conn.conn_type not in POSTGRES_CONN_TYPES:
        raise ConfigError(
            f"connection {conn_id!r} must be of type postgres or {EXECUTION_CONN_TYPE}, "
            f"not {conn.conn_type!r}"
        )
    params: dict[str, Any] = {
        "host": conn.host or "localhost",
        "port": conn.port or 5432,
        "dbname": conn.schema or "postgres",
        "user": conn.login or None,
        "password": conn.password or None,
    }
    extra = plain_extra(conn.extra_dejson or {}, conn.conn_type)
    params.update({k: v for k, v in extra.items() if k in _LIBPQ_EXTRAS})
    params.setdefault("application_name", "messagecenter")
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


class MessageCenterDbHook:
    """Open psycopg 3 connections to a Message Center database (execution or control).

    Shaped like Airflow's ``PostgresHook``: the connection is looked up lazily, never in ``__init__``,
    so building a hook while a DAG is parsed costs nothing.

    :param mc_conn_id: Airflow connection id of the database.
    :param dsn: a libpq DSN that bypasses the Airflow connection (tests, the embedded demo).
    """

    conn_name_attr = "mc_conn_id"
    default_conn_name = DEFAULT_EXECUTION_CONN_ID
    conn_type = "postgres"
    hook_name = "Message Center database"

    def __init__(self, mc_conn_id: str = DEFAULT_EXECUTION_CONN_ID, *, dsn: str | None = None) -> None:
        self.mc_conn_id = mc_conn_id
        self._dsn = dsn

    @functools.cached_property
    def conninfo(self) -> str:
        return self._dsn or conninfo_from_airflow(self.mc_conn_id)

    def get_conn(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        """Open a new connection (the caller closes it)."""
        return psycopg.connect(self.conninfo, autocommit=autocommit)

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """Context manager: a connection committed on success, rolled back on error, then closed."""
        with self.get_conn(autocommit=autocommit) as conn:
            yield conn


def instance_id_of(conn_id: str) -> int:
    """The ``instance_id`` (1..255) in the extra of execution-instance connection ``conn_id``."""
    from messagecenter.airflow.connection_types import plain_extra

    conn = get_connection(conn_id)
    # Whatever JSON the operator typed, or the form's "Instance id" field.
    value: Any = plain_extra(conn.extra_dejson or {}, conn.conn_type).get("instance_id")
    try:
        instance_id = int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f'connection {conn_id!r} needs an extra {{"instance_id": 1..255}}, got {value!r}'
        ) from None
    if not 1 <= instance_id <= 255:
        raise ConfigError(f"connection {conn_id!r}: instance_id must be between 1 and 255, got {instance_id}")
    return instance_id
