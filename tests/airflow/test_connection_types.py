"""Message Center's connection types: declared to Airflow as a provider, shown in the "Add connection"
form with labelled fields, and usable by the code that reads the connections.

The provider is found through the installed package's entry point (``pip install -e .``, which
``make test`` runs); the tests that need it say so when it is missing.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from messagecenter.airflow.connection_types import (
    EXECUTION_CONN_TYPE,
    HTTP_CONN_TYPE,
    SMTP_CONN_TYPE,
    ExecutionInstanceHook,
    HttpProviderHook,
    SmtpProviderHook,
    get_provider_info,
    plain_extra,
)
from messagecenter.airflow.hooks import conninfo_from_airflow, instance_id_of
from messagecenter.airflow.transports import http_transport, smtp_transport
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import get_settings
from messagecenter.db import schema
from messagecenter.delivery import Outcome, OutgoingMessage
from tests.support.builders import airflow_uri, needs_install
from tests.support.sinks import HttpSink, SmtpSink

TYPES = {
    EXECUTION_CONN_TYPE: "Message Center execution instance",
    SMTP_CONN_TYPE: "Message Center SMTP provider",
    HTTP_CONN_TYPE: "Message Center SMS / push provider",
}


def execution_connection(dsn: str, conn_type: str = EXECUTION_CONN_TYPE, **extra: Any) -> dict[str, Any]:
    """A connection of ``conn_type`` to the database of ``dsn``, as the form fills it."""
    p = conninfo_to_dict(dsn)
    return {
        "conn_type": conn_type,
        "host": p.get("host") or "localhost",
        "port": int(p.get("port") or 5432),
        "schema": p["dbname"],
        "login": p.get("user") or "postgres",
        "extra": extra,
    }


# --- What Airflow reads ---------------------------------------------------------------------------


def test_provider_info_declares_the_three_types_and_passes_airflows_schema() -> None:
    from airflow.providers_manager import _create_provider_info_schema_validator

    info = get_provider_info()
    _create_provider_info_schema_validator().validate(info)
    assert info["package-name"] == "messagecenter"
    declared = {t["connection-type"]: t for t in info["connection-types"]}
    assert {name: t["hook-name"] for name, t in declared.items()} == TYPES
    execution = declared[EXECUTION_CONN_TYPE]
    assert execution["conn-fields"]["instance_id"]["label"] == "Instance id"
    # Not nullable: the form refuses to save without it.
    assert execution["conn-fields"]["instance_id"]["schema"]["type"] == "integer"
    assert execution["ui-field-behaviour"]["relabeling"] == {"schema": "Database"}
    for provider in (SMTP_CONN_TYPE, HTTP_CONN_TYPE):
        assert {"max_connections", "max_rate", "deadline"} <= set(declared[provider]["conn-fields"])
    assert "from_email" in declared[SMTP_CONN_TYPE]["conn-fields"]
    assert declared[HTTP_CONN_TYPE]["conn-fields"]["token"]["schema"]["format"] == "password"


@needs_install
def test_the_installed_entry_point_names_get_provider_info() -> None:
    [entry_point] = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.dist is not None and ep.dist.name == "messagecenter"
    ]
    assert entry_point.load() is get_provider_info


@needs_install
def test_providers_manager_finds_the_hooks_and_their_form_widgets() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert manager.providers["messagecenter"].version == importlib.metadata.version("messagecenter")
    widgets = manager.connection_form_widgets
    instance_id = widgets[f"extra__{EXECUTION_CONN_TYPE}__instance_id"]
    assert instance_id.hook_class_name == f"{ExecutionInstanceHook.__module__}.ExecutionInstanceHook"
    assert instance_id.field["schema"]["title"] == "Instance id"
    for conn_type in (SMTP_CONN_TYPE, HTTP_CONN_TYPE):
        for name in ("max_connections", "max_rate", "deadline"):
            assert f"extra__{conn_type}__{name}" in widgets
    assert widgets[f"extra__{HTTP_CONN_TYPE}__token"].is_sensitive
    assert manager.field_behaviours[EXECUTION_CONN_TYPE]["relabeling"] == {"schema": "Database"}

    hooks = ProvidersManagerTaskRuntime().hooks  # imports each hook class
    for conn_type, hook_class in (
        (EXECUTION_CONN_TYPE, ExecutionInstanceHook),
        (SMTP_CONN_TYPE, SmtpProviderHook),
        (HTTP_CONN_TYPE, HttpProviderHook),
    ):
        info = hooks[conn_type]
        assert info is not None, f"{conn_type}: hook not importable"
        assert info.hook_name == TYPES[conn_type]
        assert info.connection_id_attribute_name == hook_class.conn_name_attr
        assert info.connection_testable


# --- The code reads what the form saves -----------------------------------------------------------


def test_plain_extra_reads_the_form_of_airflow_3_and_of_airflow_2() -> None:
    prefix = f"extra__{EXECUTION_CONN_TYPE}__"
    assert plain_extra({"instance_id": 3, "sslmode": None, "connect_timeout": ""}, EXECUTION_CONN_TYPE) == {
        "instance_id": 3
    }
    assert plain_extra({f"{prefix}instance_id": "4"}, EXECUTION_CONN_TYPE) == {"instance_id": "4"}
    assert plain_extra({f"{prefix}instance_id": 4, "instance_id": 5}, EXECUTION_CONN_TYPE) == {
        "instance_id": 5
    }
    # Another type's prefix is not ours.
    assert plain_extra({"extra__postgres__instance_id": 4}, EXECUTION_CONN_TYPE) == {
        "extra__postgres__instance_id": 4
    }


def test_an_execution_instance_connection_connects_like_postgres(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str
) -> None:
    conn = execution_connection(db_dsn, instance_id=7, sslmode="disable", connect_timeout=None)
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_ROUEN", json.dumps(conn))
    conninfo = conninfo_from_airflow("mc_exec_rouen")
    assert conninfo_to_dict(conninfo)["sslmode"] == "disable"
    with psycopg.connect(conninfo) as opened:
        assert opened.info.dbname == conn["schema"]
    assert instance_id_of("mc_exec_rouen") == 7
    newest = schema.available_migrations("execution")[-1].version
    assert ExecutionInstanceHook("mc_exec_rouen").test_connection() == (
        True,
        f"instance 7, execution schema version {newest}",
    )


def test_an_execution_instance_saved_by_airflow_2s_form_is_read_too(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str
) -> None:
    conn = execution_connection(db_dsn, **{f"extra__{EXECUTION_CONN_TYPE}__instance_id": "12"})
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_NANTES", json.dumps(conn))
    assert instance_id_of("mc_exec_nantes") == 12


def test_the_hook_says_what_is_wrong_with_an_execution_instance(
    monkeypatch: pytest.MonkeyPatch, empty_db_dsn: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_BREST", json.dumps(execution_connection(empty_db_dsn)))
    ok, message = ExecutionInstanceHook("mc_exec_brest").test_connection()
    assert not ok
    assert "instance_id" in message
    connection = execution_connection(empty_db_dsn, instance_id=2)
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_BREST", json.dumps(connection))
    ok, message = ExecutionInstanceHook("mc_exec_brest").test_connection()
    assert not ok
    assert "db upgrade --conn mc_exec_brest" in message
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXEC_BREST", json.dumps({**connection, "conn_type": "mysql"}))
    with pytest.raises(ConfigError, match="must be of type postgres or messagecenter_execution"):
        conninfo_from_airflow("mc_exec_brest")


def test_an_smtp_provider_connection_sends_with_the_limits_of_its_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SmtpSink() as sink:
        conn = json.loads(sink.connection(max_connections=3, max_rate=2.5, deadline=None))
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", json.dumps({**conn, "conn_type": SMTP_CONN_TYPE}))
        transport = smtp_transport("mc_smtp")
        assert (transport.max_connections, transport.max_rate, transport.deadline) == (3, 2.5, 60.0)
        assert SmtpProviderHook("mc_smtp").test_connection() == (True, "connected and authenticated")
        with transport:
            message = OutgoingMessage(event_id=11, channel=0, address="a@example.com", subject="Hi", text="x")
            result = transport.send(message)
        assert result.outcome is Outcome.SENT, result.error
        assert sink.recorder.event_ids() == [11]


def test_an_http_provider_connection_posts_with_the_fields_of_its_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with HttpSink() as provider:
        conn = {
            "conn_type": HTTP_CONN_TYPE,
            "host": "127.0.0.1",
            "port": provider.port,
            # As the form saves it: the object field as JSON, empty fields as null.
            "extra": {
                "endpoint": "/v1/send",
                "token": "t0k",
                "headers": {"X-Account": "acme"},
                "max_connections": 4,
                "max_rate": None,
                "deadline": 5,
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMS", json.dumps(conn))
        ok, message = HttpProviderHook("mc_sms").test_connection()
        assert ok, message
        assert message.endswith(f"http://127.0.0.1:{provider.port}/v1/send")
        transport = http_transport("mc_sms")
        assert (transport.max_connections, transport.max_rate, transport.deadline) == (4, None, 5.0)
        with transport:
            result = transport.send(OutgoingMessage(event_id=3, channel=1, address="+33600000000", text="x"))
        assert result.outcome is Outcome.SENT, result.error
        [request] = provider.requests
        assert request.path == "/v1/send"
        assert request.headers["Authorization"] == "Bearer t0k"
        assert request.headers["X-Account"] == "acme"


# --- Through Airflow's API server ---------------------------------------------------------------------


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch, db_dsn: str, airflow_db: Path, tmp_path: Path) -> Iterator[None]:
    # The same settings as tests/airflow/test_plugin.py: Airflow loads the plugin (and its API's settings)
    # once per process, whichever test comes first.
    for name, value in {
        "MC_API_TOKENS": "plugin-token",
        "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
        "MC_INSTANCE_ID": "9",
        "MC_REGISTRY_CACHE": str(tmp_path / "registry.json"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.airflow
@needs_install
# Airflow 3.3.2's own connection test (Connection.get_hook) still reads ProvidersManager.hooks.
@pytest.mark.filterwarnings("ignore:ProvidersManager.hooks is deprecated:FutureWarning")
def test_the_api_server_offers_the_form_and_registers_the_instance_it_saves(
    api_env: None, db_dsn: str
) -> None:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    from messagecenter.airflow import registry

    purge_cached_app()
    app = create_app(apps="core")
    conn = execution_connection(db_dsn, instance_id=6, sslmode=None, connect_timeout=None)
    body = {"connection_id": "mc_exec_form", **conn, "extra": json.dumps(conn["extra"])}
    try:
        with TestClient(app) as client:
            meta = {m["connection_type"]: m for m in client.get("/ui/connections/hook_meta").json()}
            execution = meta[EXECUTION_CONN_TYPE]
            assert execution["hook_name"] == "Message Center execution instance"
            assert execution["extra_fields"]["instance_id"]["schema"]["title"] == "Instance id"
            assert execution["standard_fields"]["url_schema"]["title"] == "Database"
            assert meta[SMTP_CONN_TYPE]["extra_fields"]["max_rate"]["schema"]["title"].startswith("Max rate")

            # The form's "Test" button: Airflow instantiates our hook for the connection.
            tested = client.post("/api/v2/connections/test", json=body)
            newest = schema.available_migrations("execution")[-1].version
            expected = f"instance 6, execution schema version {newest}"
            assert tested.json() == {"status": True, "message": expected}

            created = client.post("/api/v2/connections", json=body)
            assert created.status_code == 201, created.text
            assert "form" in registry.registered_instances()
            auth = {"Authorization": "Bearer plugin-token"}
            listed = client.get("/messagecenter/api/v1/archiving", headers=auth)
            assert "mcArchiving_form" in {w["dag_id"] for w in listed.json()}
            assert client.delete("/api/v2/connections/mc_exec_form").status_code == 204
            assert "form" not in registry.registered_instances()
    finally:
        purge_cached_app()
