"""The doctor's lookups: Airflow connections and DAGs, the databases they point to, the providers.

What is read here is handed to the pure checks of ``messagecenter.control.doctor``. Every lookup is
guarded: an unreachable database, an absent connection or an unreadable metadata DB becomes a
finding, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psycopg

from messagecenter.airflow.hooks import conninfo_from_airflow, instance_id_of
from messagecenter.control import doctor
from messagecenter.control.doctor import Finding
from messagecenter.control.registry import archiving_dag_id, env_instances, instance_name
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import (
    API_CONN_ID,
    EXEC_CONN_PREFIX,
    PUSH_CONN_ID,
    SMS_CONN_ID,
    SMTP_CONN_ID,
    Settings,
)
from messagecenter.db import schema
from messagecenter.execution import heartbeat

DagStates = Callable[[Iterable[str]], dict[str, bool | None]]
CONNECT_TIMEOUT = 5


def dag_states(dag_ids: Iterable[str]) -> dict[str, bool | None]:
    """``is_paused`` of each DAG from the Airflow metadata DB; None for an absent (or stale) DAG."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    wanted = list(dag_ids)
    with create_session(scoped=False) as session:
        rows = session.execute(
            select(DagModel.dag_id, DagModel.is_paused).where(
                DagModel.dag_id.in_(wanted), DagModel.is_stale.is_(False)
            )
        ).all()
    found = {dag_id: bool(paused) for dag_id, paused in rows}
    return {dag_id: found.get(dag_id) for dag_id in wanted}


def execution_connections() -> list[str]:
    """Every ``mc_exec_<instance>`` the control instance should know: metadata DB, environment, registry."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from messagecenter.airflow.registry import VARIABLE_PREFIX, _orm_variable_keys

    with create_session(scoped=False) as session:
        conn_ids = session.scalars(
            select(Connection.conn_id).where(Connection.conn_id.startswith(EXEC_CONN_PREFIX, autoescape=True))
        )
        names = {name for conn_id in conn_ids if (name := instance_name(conn_id))}
    names |= env_instances()
    names |= {key[len(VARIABLE_PREFIX) :] for key in _orm_variable_keys()}
    return sorted(names)


def _connect(conn_id: str) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo_from_airflow(conn_id), connect_timeout=CONNECT_TIMEOUT, autocommit=True)


def _read_database(
    conn_id: str, component: schema.Component, read: Callable[[psycopg.Connection[Any]], Any] | None = None
) -> tuple[Finding, Any]:
    """The database finding of ``conn_id``, and what ``read`` returned (None if it could not run)."""
    newest = schema.available_migrations(component)[-1].version
    try:
        with _connect(conn_id) as conn:
            version = schema.current_version(conn, component)
            data = read(conn) if read is not None and version == newest else None
    except (ConfigError, psycopg.Error) as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return doctor.check_database(conn_id, component, version=None, newest=newest, problem=problem), None
    return doctor.check_database(conn_id, component, version=version, newest=newest), data


def _heartbeat_ages(conn: psycopg.Connection[Any]) -> dict[str, float | None]:
    beats = heartbeat.read_heartbeats(conn)
    return {
        name: beats[name].age_seconds if name in beats else None for name in heartbeat.TECHNICAL_WORKFLOWS
    }


def _execution_data(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    return {"ages": _heartbeat_ages(conn), "templates": doctor.published_template_count(conn)}


def _dag_findings(read_states: DagStates, dag_ids: list[str]) -> tuple[list[Finding], dict[str, bool | None]]:
    try:
        states = read_states(dag_ids)
    except Exception as exc:
        return [
            doctor.warning(
                "Airflow metadata DB",
                f"unreadable ({exc}); DAGs not checked: run the doctor where `airflow dags list` works "
                "(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN set)",
            )
        ], {}
    return [], states


def delivery_findings() -> list[Finding]:
    """mc_smtp answers EHLO; mc_sms and mc_push accept a TCP connection."""
    from airflow.sdk import BaseHook

    from messagecenter.airflow.transports import endpoint_from_airflow

    findings = []
    try:
        smtp = BaseHook.get_connection(SMTP_CONN_ID)
    except Exception:
        findings.append(doctor.check_delivery(SMTP_CONN_ID, "email", "not defined"))
    else:
        host, port = smtp.host or "localhost", int(smtp.port or 25)
        problem = doctor.probe_smtp(host, port)
        findings.append(doctor.check_delivery(SMTP_CONN_ID, "email", problem, f"{host}:{port}"))
    for conn_id, channel in ((SMS_CONN_ID, "sms"), (PUSH_CONN_ID, "push")):
        try:
            url = endpoint_from_airflow(conn_id).url
        except ConfigError as exc:
            findings.append(doctor.check_delivery(conn_id, channel, str(exc)))
            continue
        findings.append(doctor.check_delivery(conn_id, channel, doctor.probe_http(url), url))
    return findings


def api_token_count(settings: Settings) -> int:
    if settings.api_tokens:
        return len(settings.api_tokens)
    from airflow.sdk import BaseHook

    try:
        password = BaseHook.get_connection(API_CONN_ID).password or ""
    except Exception:
        return 0
    return len([t for t in password.split(",") if t.strip()])


def execution_findings(
    settings: Settings, *, read_states: DagStates = dag_states, probe_delivery: bool = True
) -> list[Finding]:
    """The execution role: database, technical workflows, providers, API tokens, templates."""
    findings: list[Finding] = []
    db_finding, data = _read_database(settings.execution_conn_id, "execution", _execution_data)
    findings.append(db_finding)
    problems, states = _dag_findings(read_states, list(heartbeat.TECHNICAL_WORKFLOWS))
    findings += problems
    if states:
        findings += doctor.check_dags(states, why=": no event of its queue is processed")
    if data is not None:
        findings += doctor.check_heartbeats(
            data["ages"], max_age_seconds=settings.monitoring.heartbeat_max_age
        )
    if probe_delivery:
        findings += delivery_findings()
    findings.append(doctor.check_api_tokens(api_token_count(settings)))
    if data is not None:
        findings.append(doctor.check_templates(data["templates"]))
    return findings


def control_findings(
    settings: Settings,
    *,
    read_states: DagStates = dag_states,
    instances: Callable[[], list[str]] = execution_connections,
) -> list[Finding]:
    """The control role: its database, then each execution instance and its archiving."""
    findings: list[Finding] = []
    db_finding, lags = _read_database(settings.control_conn_id, "control", doctor.archive_lags)
    findings.append(db_finding)
    try:
        names = instances()
    except Exception as exc:
        findings.append(
            doctor.warning("execution instances", f"cannot list the mc_exec_* connections: {exc}")
        )
        names = []
    if not names:
        findings.append(
            doctor.warning(
                "execution instances",
                "none registered: add a connection mc_exec_<name> (type postgres, extra "
                '{"instance_id": N}) for each execution instance',
            )
        )
        return findings
    problems, states = _dag_findings(read_states, [archiving_dag_id(n) for n in names])
    findings += problems
    ids: dict[str, int | None] = {}
    id_problems: dict[str, str] = {}
    for name in names:
        conn_id = EXEC_CONN_PREFIX + name
        try:
            ids[name] = instance_id_of(conn_id)
        except ConfigError as exc:
            ids[name], id_problems[name] = None, str(exc)
        db_finding, data = _read_database(conn_id, "execution", _heartbeat_ages)
        findings.append(db_finding)
        if data is not None:
            findings += doctor.check_heartbeats(
                data,
                max_age_seconds=settings.monitoring.heartbeat_max_age,
                where=f" on {name}",
                airflow_hint=f"turn it on in the Airflow of instance {name}",
            )
        if states:
            dag_id = archiving_dag_id(name)
            findings.append(doctor.check_archiving_dag(name, dag_id, states.get(dag_id)))
        if lags is not None:
            findings.append(
                doctor.check_archive_lag(
                    name,
                    archiving_dag_id(name),
                    lags.get(name),
                    warning_seconds=settings.monitoring.archive_lag_warning,
                )
            )
    findings += doctor.check_instance_ids(ids, id_problems)
    return findings


def run_doctor(settings: Settings, *, roles: Mapping[str, bool] | None = None) -> list[Finding]:
    """Every finding of this deployment's roles (``MC_ROLE``), or of the ``roles`` asked for."""
    roles = roles or {"execution": settings.runs_execution, "control": settings.runs_control}
    findings: list[Finding] = []
    if roles.get("execution"):
        findings += execution_findings(settings)
    if roles.get("control"):
        findings += control_findings(settings)
    return findings
