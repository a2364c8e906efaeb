"""The Message Center page: indicators and alert levels from a real database, and its routes'
auth inside a real Airflow API server app with real users (not all-admins)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import AlertLevels, get_settings, load_settings
from messagecenter.execution.heartbeat import record_heartbeat
from messagecenter.monitoring import indicators
from tests.support.builders import airflow_uri, seed


def test_alert_levels_follow_campaigns_thresholds() -> None:
    alerts = AlertLevels()
    assert [indicators.alert_level(v, alerts.pending) for v in (99, 100, 399, 400)] == [
        "ok",
        "warning",
        "warning",
        "alert",
    ]
    assert indicators.alert_level(4.0, alerts.queue_seconds) == "warning"
    assert indicators.alert_level(20, alerts.processing_seconds) == "alert"
    assert indicators.error_rate_percent(95, 0, 5) == 5.0
    assert indicators.error_rate_percent(0, 0, 0) == 0.0


def test_alert_levels_are_settings() -> None:
    settings = load_settings({"MC_ALERT_PENDING": "10,20", "MC_ALERT_ERROR_RATE": "0.5,2"})
    assert settings.monitoring.alerts.pending == (10, 20)
    assert settings.monitoring.alerts.error_rate_percent == (0.5, 2)
    assert settings.monitoring.alerts.queue_seconds == (4, 8)
    with pytest.raises(ConfigError, match="MC_ALERT_PENDING must be two numbers"):
        load_settings({"MC_ALERT_PENDING": "10"})


def test_indicators_statuses_and_throughput_from_the_database(conn: psycopg.Connection) -> None:
    seed(conn)
    data = indicators.instance_overview(conn, AlertLevels())
    rt = data["queues"]["rt"]
    assert rt["pending"] == {"value": 3, "level": "ok", "thresholds": [100, 400]}
    assert rt["queue_seconds"]["level"] == "warning"  # waiting 5 s: past 4 s, not 8
    assert 5 <= rt["queue_seconds"]["value"] < 8
    assert rt["processing_seconds"]["value"] == 12.0
    assert rt["processing_seconds"]["level"] == "warning"
    assert rt["error_rate_percent"] == {"value": 4.0, "level": "warning", "thresholds": [1, 5]}
    assert rt["last_hour"] == {"sent": 96, "ignored": 0, "failed": 4}
    assert data["queues"]["batch"]["pending"]["value"] == 0
    assert data["status_last_hour"]["rt"]["Sent"] == 96
    assert data["status_last_hour"]["rt"]["Pending"] == 3
    assert data["status_last_hour"]["batch"]["Sent"] == 0
    assert data["status_last_day"]["batch"]["Sent"] == 1
    plot = data["throughput"]
    assert len(plot["minutes"]) == 360
    assert sum(plot["series"]["Sent"]) == 97
    assert sum(plot["series"]["Delivery failed"]) == 4
    assert set(plot["series"]) == {
        "Sent",
        "Ignored by the delivery",
        "Delivery failed",
        "Event not taken into account",
        "Event expired",
    }


# --- The routes inside Airflow's API server app, with real users -------------------------------------


@pytest.fixture
def airflow_app(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str, conn: psycopg.Connection, airflow_db: Path, tmp_path: Path
) -> Iterator[tuple[Any, dict[str, str]]]:
    from airflow.api_fastapi.app import create_app, purge_cached_app

    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin-pw", "viewer": "viewer-pw"}))
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
        "AIRFLOW_CONN_MC_CONTROL": airflow_uri(db_dsn),
        "AIRFLOW_CONN_MC_EXEC_LOCAL": airflow_uri(db_dsn) + "?instance_id=1",
        "MC_REGISTRY_CACHE": str(tmp_path / "registry.json"),
        "MC_API_TOKENS": "intake-token",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    seed(conn)
    record_heartbeat(conn, "rtEventsProcessing", 5, 0.5)
    _forget_process_state()
    purge_cached_app()
    app = create_app(apps="core")
    try:
        with TestClient(app) as client:
            tokens = {}
            for user, password in (("admin", "admin-pw"), ("viewer", "viewer-pw")):
                answer = client.post("/auth/token", json={"username": user, "password": password})
                assert answer.status_code in (200, 201), answer.text
                tokens[user] = answer.json()["access_token"]
            yield client, tokens
    finally:
        purge_cached_app()
        _forget_process_state()
        get_settings.cache_clear()


def _forget_process_state() -> None:
    """What this test leaves in the test process: the plugin app's settings and tokens (read once
    per process, from this test's environment), and the registry Variable the button wrote in the
    shared metadata DB (with its reparse request), which later DAG parses would see."""
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    import messagecenter_plugin
    from messagecenter.airflow.registry import VARIABLE_PREFIX

    state = messagecenter_plugin._api.state.mc
    state.close()
    state._settings = None
    state._tokens = None
    with create_session(scoped=False) as session:
        Variable.delete(VARIABLE_PREFIX + "local", session=session)
        session.execute(delete(DagPriorityParsingRequest))


@pytest.mark.airflow
def test_page_and_data_need_an_airflow_user_and_the_button_needs_connection_rights(
    airflow_app: tuple[Any, dict[str, str]],
) -> None:
    from messagecenter.airflow import registry

    client, tokens = airflow_app
    page = client.get("/messagecenter/ui/")
    assert page.status_code == 200
    assert "static/uplot/uPlot.iife.min.js" in page.text
    assert client.get("/messagecenter/ui/static/uplot/uPlot.iife.min.js").status_code == 200
    assert client.get("/messagecenter/ui/api/overview").status_code == 401
    intake = {"Authorization": "Bearer intake-token"}  # the intake API's token is not an Airflow user
    assert client.get("/messagecenter/ui/api/overview", headers=intake).status_code in (401, 403)
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}

    data = client.get("/messagecenter/ui/api/overview", headers=viewer).json()
    assert data["can_create_archiving"] is False
    [local] = data["instances"]
    assert local["name"] == "local"
    assert local["queues"]["rt"]["pending"]["value"] == 3
    assert local["queues"]["rt"]["error_rate_percent"]["level"] == "warning"
    assert local["archiving"]["state"] == "absent"  # no dag-processor here: never parsed
    assert local["workflows"]["state"] == "waiting"  # rtEventsProcessing reported, not the two others
    assert local["workflows"]["waiting"] == ["batchEventsProcessing", "updateEventsStatus"]
    assert data["alerts"]["pending"] == [100, 400]
    assert any(f["what"] == "DAG mcArchiving_local" for f in data["doctor"]["findings"])
    assert client.get("/messagecenter/ui/api/overview", headers=admin).json()["can_create_archiving"] is True

    url = "/messagecenter/ui/api/archiving/local"
    assert client.post(url, json={"instance": "local"}, headers=viewer).status_code == 403
    assert client.post(url, data={"instance": "local"}, headers=admin).status_code in (415, 422)  # a form
    assert client.post(url, json={"instance": "other"}, headers=admin).status_code == 422
    assert "local" not in registry.registered_instances()
    created = client.post(url, json={"instance": "local"}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["dag_id"] == "mcArchiving_local"
    assert "local" in registry.registered_instances()
    bad = client.post(
        "/messagecenter/ui/api/archiving/Bad-Name", json={"instance": "Bad-Name"}, headers=admin
    )
    assert bad.status_code == 422
