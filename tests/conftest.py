"""Test fixtures: a real PostgreSQL, one fresh database per test, and an isolated Airflow home.

PostgreSQL: ``MC_TEST_DSN`` if set, else the server on 127.0.0.1:5432 if one answers, else an embedded
server started with ``pgserver``. A session fixture builds a template database with the schema;
each test gets its own copy through ``CREATE DATABASE ... TEMPLATE`` (cheap, and no test sees
another's rows).
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.builders import REPO, create_database, drop_database

# Before anything imports airflow: an Airflow home of our own, and no developer setting leaking in.
for _name in [n for n in os.environ if n.startswith(("MC_", "AIRFLOW_CONN_MC", "AIRFLOW__"))]:
    if _name != "MC_TEST_DSN":
        del os.environ[_name]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mc-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # Long enough for HS512 (PyJWT warns below 64 bytes); a fresh one per run.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
    }
)

import psycopg  # noqa: E402
import pytest  # noqa: E402

from messagecenter.db import schema  # noqa: E402

_counter = itertools.count()


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server where tests may create databases."""
    if os.environ.get("MC_TEST_DSN"):
        yield os.environ["MC_TEST_DSN"]
        return
    local = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    if _answers(local):
        yield local
        return
    import pgserver  # embedded PostgreSQL, for a laptop without a server

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    """Name of a database holding the current schema (execution and control), to copy per test."""
    name = f"mc_template_{os.getpid()}"
    dsn = create_database(pg_admin_dsn, name)
    with psycopg.connect(dsn) as conn:
        for component in schema.COMPONENTS:
            schema.upgrade(conn, component)
    yield name
    drop_database(pg_admin_dsn, name)


@pytest.fixture
def empty_db_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a brand-new empty database (no schema)."""
    name = f"mc_test_{os.getpid()}_{next(_counter)}"
    yield create_database(pg_admin_dsn, name)
    drop_database(pg_admin_dsn, name)


@pytest.fixture
def db_dsn(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """DSN of a fresh database with the current schema, private to this test."""
    name = f"mc_test_{os.getpid()}_{next(_counter)}"
    yield create_database(pg_admin_dsn, name, template=template_db)
    drop_database(pg_admin_dsn, name)


@pytest.fixture
def make_db(pg_admin_dsn: str, template_db: str) -> Iterator[Any]:
    """Factory of fresh databases with the current schema (several instances in one test)."""
    names: list[str] = []

    def make() -> str:
        names.append(f"mc_test_{os.getpid()}_{next(_counter)}")
        return create_database(pg_admin_dsn, names[-1], template=template_db)

    yield make
    for name in names:
        drop_database(pg_admin_dsn, name)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An initialised Airflow metadata DB (SQLite) in the test Airflow home."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return AIRFLOW_HOME


@pytest.fixture(autouse=True)
def _fresh_circuit_breakers() -> Iterator[None]:
    """Each test starts as a new worker would: no provider's circuit is open."""
    from messagecenter.delivery.guards import clear_breakers

    clear_breakers()
    yield
    clear_breakers()


@pytest.fixture
def smtp_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real SMTP server, registered as the ``mc_smtp`` connection."""
    from tests.support.sinks import SmtpSink

    with SmtpSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", sink.connection())
        yield sink


@pytest.fixture
def http_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Real SMS and push providers, registered as the ``mc_sms`` and ``mc_push`` connections."""
    from tests.support.sinks import HttpSink

    with HttpSink() as sms, HttpSink() as push:  # each yields its Provider
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", sms.connection("/sms"))
        monkeypatch.setenv("AIRFLOW_CONN_MC_PUSH", push.connection("/push"))
        yield {"sms": sms, "push": push}
