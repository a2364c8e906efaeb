"""The plugin in a real Airflow: listed by ``airflow plugins``, and the API answers inside the API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from messagecenter.core.settings import get_settings
from tests.support.builders import airflow_uri

pytestmark = pytest.mark.airflow


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch, db_dsn: str, airflow_db: Path) -> Iterator[dict[str, str]]:
    env = {
        "MC_API_TOKENS": "plugin-token",
        "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
        "MC_INSTANCE_ID": "9",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def test_airflow_plugins_command_lists_the_plugin(plugin_env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "--output", "json"],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    ).stdout
    plugins = {p["name"]: p for p in json.loads(out[out.index("[") :])}
    assert "messagecenter" in plugins
    assert "Message Center API" in json.dumps(plugins["messagecenter"])


def test_api_answers_through_the_airflow_api_server_app(plugin_env: dict[str, str]) -> None:
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    app = create_app(apps="core")
    with TestClient(app) as client:
        denied = client.get("/messagecenter/api/v1/health")
        assert denied.status_code == 401
        auth = {"Authorization": "Bearer plugin-token"}
        pushed = client.post(
            "/messagecenter/api/v1/events/rt", json={"type": "OTP", "channel": "sms"}, headers=auth
        )
        assert pushed.status_code == 201, pushed.text
        health = client.get("/messagecenter/api/v1/health", headers=auth).json()
    assert health["pending"]["rt"] == 1
    assert health["instance_id"] == 9
    purge_cached_app()


def test_a_connection_added_through_the_rest_api_registers_its_archiving_workflow(
    plugin_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.api_fastapi.app import create_app, purge_cached_app

    from messagecenter.airflow import registry

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    monkeypatch.setenv("MC_REGISTRY_CACHE", str(tmp_path / "registry.json"))
    purge_cached_app()
    app = create_app(apps="core")
    connection = {"connection_id": "mc_exec_delta", "conn_type": "postgres", "extra": '{"instance_id": 4}'}
    try:
        with TestClient(app) as client:
            created = client.post("/api/v2/connections", json=connection)
            assert created.status_code == 201, created.text
            # The root middleware synced at once: the DAG file now lists the instance.
            assert "delta" in registry.registered_instances()
            auth = {"Authorization": "Bearer plugin-token"}
            listed = client.get("/messagecenter/api/v1/archiving", headers=auth)
            assert {w["dag_id"] for w in listed.json()} >= {"mcArchiving_delta"}
            action = client.post("/messagecenter/api/v1/archiving/Bad-Name", headers=auth)
            assert action.status_code == 422
            assert "invalid execution instance name" in action.json()["detail"]
            assert client.post("/messagecenter/api/v1/archiving/vault", headers={}).status_code == 401
            assert client.delete("/api/v2/connections/mc_exec_delta").status_code == 204
            assert "delta" not in registry.registered_instances()
    finally:
        purge_cached_app()
