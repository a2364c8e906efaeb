"""Databases of the benchmarks: created fresh on the server ``MC_BENCH_DSN`` names, dropped at the end."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from messagecenter.db import schema

ADMIN_DSN = os.environ.get("MC_BENCH_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def dsn_for(name: str) -> str:
    params = conninfo_to_dict(ADMIN_DSN)
    params["dbname"] = name
    return make_conninfo(**params)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def migrated_database(name: str, component: schema.Component) -> str:
    """DSN of database ``name``, recreated empty and migrated to ``component``'s current schema."""
    drop_database(name)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = dsn_for(name)
    with psycopg.connect(dsn) as conn:
        schema.upgrade(conn, component)
    return dsn


def drop_databases(prefix: str) -> None:
    """Drop every database whose name starts with ``prefix`` (what a benchmark created)."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        names = [
            r[0]
            for r in admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix.replace("_", r"\_") + "%",)
            )
        ]
    for name in names:
        drop_database(name)


def start_api(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The standalone intake API (``uvicorn messagecenter.api:app``) in its own process."""
    command = [sys.executable, "-m", "uvicorn", "messagecenter.api:app", "--port", str(port)]
    return subprocess.Popen([*command, "--log-level", "warning"], env=env)
