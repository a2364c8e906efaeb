"""The Message Center page's data: every execution instance's queues, heartbeats and archiving.

Runs in the Airflow API server (the plugin), in a worker thread: it reads the execution databases
through their Airflow connections (``mc_exec_*`` on a control deployment, ``mc_execution`` on an
execution-only one), control's archive state, the archiving DAGs in the metadata DB and the doctor.
An unreachable instance shows its error; it never fails the page.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from messagecenter.airflow import doctor as airflow_doctor
from messagecenter.airflow import registry
from messagecenter.airflow.hooks import conninfo_from_airflow
from messagecenter.control import dashboard
from messagecenter.control import doctor as control_doctor
from messagecenter.control.registry import archiving_dag_id
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import EXEC_CONN_PREFIX, Settings
from messagecenter.execution import heartbeat

log = logging.getLogger(__name__)


def instances(settings: Settings) -> list[tuple[str, str]]:
    """(name, connection id) of each execution instance the page shows."""
    names: list[str] = []
    if settings.runs_control:
        try:
            names = airflow_doctor.execution_connections()
        except Exception as exc:
            log.warning("Cannot list the mc_exec_* connections: %s", exc)
    found = [(name, EXEC_CONN_PREFIX + name) for name in names]
    if not found and settings.runs_execution:
        found = [("this instance", settings.execution_conn_id)]
    return found


def _instance(name: str, conn_id: str, settings: Settings) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "connection": conn_id, "error": None}
    try:
        with psycopg.connect(conninfo_from_airflow(conn_id), connect_timeout=5, autocommit=True) as conn:
            data.update(dashboard.instance_overview(conn, settings.monitoring.alerts))
            beats = heartbeat.read_heartbeats(conn)
    except (ConfigError, psycopg.Error) as exc:
        data["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return data
    data["heartbeats"] = [
        beats[w].to_json() if w in beats else {"workflow": w, "last_run": None, "age_seconds": None}
        for w in (*heartbeat.TECHNICAL_WORKFLOWS, heartbeat.CLEANUP_WORKFLOW)
    ]
    data["stale_workflows"] = heartbeat.stale_workflows(beats, settings.monitoring.heartbeat_max_age)
    return data


def _archive_lags(settings: Settings) -> dict[str, float] | None:
    try:
        with psycopg.connect(
            conninfo_from_airflow(settings.control_conn_id), connect_timeout=5, autocommit=True
        ) as conn:
            return control_doctor.archive_lags(conn)
    except (ConfigError, psycopg.Error) as exc:
        log.warning("Archive state unreadable: %s", exc)
        return None


def overview(settings: Settings, *, with_doctor: bool = True) -> dict[str, Any]:
    """Everything the page shows."""
    found = instances(settings)
    shown = [_instance(name, conn_id, settings) for name, conn_id in found]
    if settings.runs_control:
        lags = _archive_lags(settings)
        exec_names = [name for name, conn_id in found if conn_id.startswith(EXEC_CONN_PREFIX)]
        try:
            states = airflow_doctor.dag_states([archiving_dag_id(n) for n in exec_names])
        except Exception as exc:
            log.warning("Metadata DB unreadable: %s", exc)
            states = {}
        for item in shown:
            if not item["connection"].startswith(EXEC_CONN_PREFIX):
                continue
            dag_id = archiving_dag_id(item["name"])
            paused = states.get(dag_id)
            item["archiving"] = {
                "dag_id": dag_id,
                "state": "absent" if paused is None else ("paused" if paused else "on"),
                "lag_seconds": None if lags is None else lags.get(item["name"]),
                "lag_warning_seconds": settings.monitoring.archive_lag_warning,
            }
    findings = airflow_doctor.run_doctor(settings) if with_doctor else []
    return {
        "instances": shown,
        "alerts": {
            "pending": settings.monitoring.alerts.pending,
            "queue_seconds": settings.monitoring.alerts.queue_seconds,
            "processing_seconds": settings.monitoring.alerts.processing_seconds,
            "error_rate_percent": settings.monitoring.alerts.error_rate_percent,
        },
        "doctor": {
            "exit_code": control_doctor.exit_code(findings),
            "findings": [f.to_json() for f in findings],
        },
    }


def create_archiving_workflow(instance: str) -> dict[str, str]:
    """The "Create the archiving workflow" button: register ``instance`` and ask for a reparse."""
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        registry.register_instance(session, instance)
    return registry.workflow(instance)
