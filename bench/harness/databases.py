"""Throwaway databases of the benchmarks: created with the schema, dropped when the benchmark ends.

The server, as the tests choose theirs: ``MC_BENCH_DSN`` (an admin DSN) if set, else ``MC_TEST_DSN``,
else PostgreSQL on 127.0.0.1:5432 if it answers, else an embedded server (``pgserver``) for this run.
"""

from __future__ import annotations

import atexit
import functools
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from messagecenter.db import schema

LOCAL = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@functools.cache
def admin_dsn() -> str:
    """DSN of the server where the benchmark creates its databases (see the module's docstring)."""
    for variable in ("MC_BENCH_DSN", "MC_TEST_DSN"):
        if os.environ.get(variable):
            return os.environ[variable]
    if _answers(LOCAL):
        return LOCAL
    import pgserver  # embedded PostgreSQL, for a laptop without a server

    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="mc-bench-pgdata-")), cleanup_mode="delete")
    atexit.register(server.cleanup)
    uri: str = server.get_uri()
    return uri


def dsn_for(name: str) -> str:
    """DSN of database ``name`` on the benchmark's server."""
    return make_conninfo(admin_dsn(), dbname=name)


def drop_database(name: str) -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_database(name: str, *components: schema.Component) -> str:
    """DSN of database ``name``, recreated empty and migrated to each of ``components``' schema."""
    drop_database(name)
    with psycopg.connect(admin_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = dsn_for(name)
    with psycopg.connect(dsn) as conn:
        for component in components:
            schema.upgrade(conn, component)
    return dsn


def drop_databases(prefix: str) -> None:
    """Drop every database whose name starts with ``prefix`` (what a benchmark created)."""
    with psycopg.connect(admin_dsn(), autocommit=True) as admin:
        names = [
            r[0]
            for r in admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix.replace("_", r"\_") + "%",)
            )
        ]
    for name in names:
        drop_database(name)


class Databases:
    """The databases of one benchmark, all named ``<prefix><name>``; every one of them (and any an
    interrupted earlier run left) is dropped when the ``with`` block ends, whatever happened."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def create(self, name: str, *components: schema.Component) -> str:
        """DSN of a fresh database ``<prefix><name>`` with the schema of ``components``."""
        return create_database(self.prefix + name, *components)

    def __enter__(self) -> Databases:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        drop_databases(self.prefix)


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    """The first column of the first row of ``query`` (a count, say), on a connection of its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]
