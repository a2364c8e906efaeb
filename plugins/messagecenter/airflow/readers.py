"""What the doctor and the Message Center page read from Airflow and the databases.

Airflow connections and DAGs (the metadata DB), the databases they point to, the providers; what is
read is handed to ``messagecenter.monitoring`` (the doctor's checks, the page's indicators, the
heartbeat rule). Every lookup is guarded: an unreachable database, an absent connection or an
unreadable metadata DB becomes a finding (the doctor) or an error shown in its place (the page),
never a traceback. The page's data is read in the Airflow API server (the plugin), in a worker
thread: the execution databases through their Airflow connections (``mc_exec_*`` on a control
deployment, ``mc_execution`` on an execution-only one), control's archive state, the archiving DAGs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psycopg

from messagecenter.airflow import registry
from messagecenter.airflow.connections import api_tokens, get_connection
from messagecenter.airflow.hooks import conninfo_from_airflow, instance_id_of
from messagecenter.airflow.registry import archiving_dag_id, env_instances, instance_name
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import (
    BOUNCE_MAILBOX_CONN_ID,
    EXEC_CONN_PREFIX,
    PUSH_CONN_ID,
    SMS_CONN_ID,
    SMTP_CONN_ID,
    Settings,
)
from messagecenter.db import schema
from messagecenter.execution.heartbeat import (
    BOUNCE_WORKFLOW,
    CLEANUP_WORKFLOW,
    TECHNICAL_WORKFLOWS,
    read_heartbeats,
)
from messagecenter.monitoring import doctor, heartbeats, indicators, probes
from messagecenter.monitoring.doctor import Finding

log = logging.getLogger(__name__)

DagStates = Callable[[Iterable[str]], dict[str, bool | None]]
CONNECT_TIMEOUT = 5


# --- Airflow: DAGs and execution instances ----------------------------------------------------------


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

    with create_session(scoped=False) as session:
        conn_ids = session.scalars(
            select(Connection.conn_id).where(Connection.conn_id.startswith(EXEC_CONN_PREFIX, autoescape=True))
        )
        names = {name for conn_id in conn_ids if (name := instance_name(conn_id))}
    names |= env_instances()
    names |= {key[len(registry.VARIABLE_PREFIX) :] for key in registry._orm_variable_keys()}
    return sorted(names)


# --- The databases -----------------------------------------------------------------------------------


def _connect(conn_id: str) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo_from_airflow(conn_id), connect_timeout=CONNECT_TIMEOUT, autocommit=True)


def _problem(exc: Exception) -> str:
    """The first line of an error, or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        finding = doctor.check_database(
            conn_id, component, version=None, newest=newest, problem=_problem(exc)
        )
        return finding, None
    return doctor.check_database(conn_id, component, version=version, newest=newest), data


def _heartbeat_ages(conn: psycopg.Connection[Any]) -> dict[str, float | None]:
    return heartbeats.heartbeat_ages(read_heartbeats(conn))


def _feedback(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
    return indicators.feedback_overview(conn, settings.monitoring.alerts, settings.monitoring.feedback_window)


def _execution_data(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
    return {
        "ages": _heartbeat_ages(conn),
        "templates": indicators.published_template_count(conn),
        "feedback": _feedback(conn, settings),
    }


def _instance_data(conn: psycopg.Connection[Any], settings: Settings) -> dict[str, Any]:
    return {"ages": _heartbeat_ages(conn), "feedback": _feedback(conn, settings)}


# --- The doctor --------------------------------------------------------------------------------------


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


def feedback_findings(figures: Mapping[str, Any], settings: Settings, where: str = "") -> list[Finding]:
    """What came back of the messages an instance sent: rates, quarantine, unqualified texts."""
    window = figures["window_seconds"]
    alerts = settings.monitoring.alerts
    top = figures["unqualified"]["top"]
    return [
        doctor.check_complaint_rate(
            figures["complained"],
            figures["sent"],
            levels=alerts.complaint_rate_percent,
            window_seconds=window,
            where=where,
        ),
        doctor.check_bounce_rate(
            figures["bounced"],
            figures["sent"],
            levels=alerts.bounce_rate_percent,
            window_seconds=window,
            where=where,
        ),
        doctor.check_quarantine(figures["quarantine"]["totals"], unmatched=figures["unmatched"], where=where),
        doctor.check_unqualified_texts(
            figures["unqualified"]["count"],
            top[0]["text"] if top else None,
            window_seconds=window,
            where=where,
        ),
    ]


def feedback_setup_findings(settings: Settings) -> list[Finding]:
    """This execution instance's feedback setup: the secret of VERP and one-click unsubscribe, the
    bounce mailbox."""
    secret_set = bool(settings.feedback.secret)
    try:
        get_connection(BOUNCE_MAILBOX_CONN_ID)
    except ConfigError:
        mailbox = False
    else:
        mailbox = True
    return [
        doctor.check_feedback_secret(secret_set),
        doctor.check_bounce_mailbox(mailbox, secret_set=secret_set),
    ]


def delivery_findings() -> list[Finding]:
    """mc_smtp answers EHLO; each SMS and push provider accepts a TCP connection where its
    connection type reaches it (network probes): the SMSC of an ``smpp`` connection, the base URL
    of an ``fcm`` or ``apns`` one, the endpoint of an ``http`` one. The generic ``mc_push`` is
    probed only when a platform has no connection of its own (it is not used otherwise)."""
    from messagecenter.airflow.transports import PUSH_CONN_IDS, push_connection

    findings = []
    try:
        smtp = get_connection(SMTP_CONN_ID)
    except ConfigError:
        findings.append(doctor.check_delivery(SMTP_CONN_ID, "email", "not defined"))
    else:
        host, port = smtp.host or "localhost", int(smtp.port or 25)
        problem = probes.probe_smtp(host, port)
        findings.append(doctor.check_delivery(SMTP_CONN_ID, "email", problem, f"{host}:{port}"))
    providers = {SMS_CONN_ID: "sms"}
    for platform in PUSH_CONN_IDS:  # each push connection that serves a platform, once
        conn_id, _ = push_connection(platform)
        providers.setdefault(conn_id, "push" if conn_id == PUSH_CONN_ID else platform.label)
    for conn_id, channel in providers.items():
        try:
            target = _provider_address(conn_id)
        except ConfigError as exc:
            findings.append(doctor.check_delivery(conn_id, channel, str(exc)))
            continue
        findings.append(doctor.check_delivery(conn_id, channel, probes.probe_http(target), target))
    return findings


def _provider_address(conn_id: str) -> str:
    """Where the provider of ``conn_id`` is reached, as a URL (``smpp://host:port`` for an SMSC).

    :raises ConfigError: the connection is not defined or not valid.
    """
    from messagecenter.airflow import transports

    conn_type = (get_connection(conn_id).conn_type or "").lower()
    if conn_type == "smpp":
        config = transports.smpp_config_from_airflow(conn_id)
        return f"smpp://{config.host}:{config.port}"
    if conn_type == "fcm":
        return transports.fcm_account_from_airflow(conn_id).base_url
    if conn_type == "apns":
        return transports.apns_account_from_airflow(conn_id).base_url
    return transports.http_api_from_airflow(conn_id).url


def execution_findings(
    settings: Settings, *, read_states: DagStates = dag_states, probe_delivery: bool = True
) -> list[Finding]:
    """The execution role: database, technical workflows, providers, API tokens, templates, and
    delivery feedback (what came back, the secret, the bounce mailbox)."""
    findings: list[Finding] = []
    read = functools.partial(_execution_data, settings=settings)
    db_finding, data = _read_database(settings.execution_conn_id, "execution", read)
    findings.append(db_finding)
    problems, states = _dag_findings(read_states, list(TECHNICAL_WORKFLOWS))
    findings += problems
    if states:
        findings += doctor.check_dags(states, why=": no event of its queue is processed")
    if data is not None:
        findings += doctor.check_heartbeats(
            data["ages"], max_age_seconds=settings.monitoring.heartbeat_max_age
        )
    if probe_delivery:
        findings += delivery_findings()
    findings.append(doctor.check_api_tokens(len(api_tokens(settings))))
    if data is not None:
        findings.append(doctor.check_templates(data["templates"]))
        findings += feedback_findings(data["feedback"], settings)
    findings += feedback_setup_findings(settings)
    return findings


def control_findings(
    settings: Settings,
    *,
    read_states: DagStates = dag_states,
    instances: Callable[[], list[str]] = execution_connections,
) -> list[Finding]:
    """The control role: its database, then each execution instance (heartbeats, delivery feedback)
    and its archiving."""
    findings: list[Finding] = []
    db_finding, lags = _read_database(settings.control_conn_id, "control", indicators.archive_lags)
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
        read = functools.partial(_instance_data, settings=settings)
        db_finding, data = _read_database(conn_id, "execution", read)
        findings.append(db_finding)
        if data is not None:
            findings += doctor.check_heartbeats(
                data["ages"], max_age_seconds=settings.monitoring.heartbeat_max_age, instance=name
            )
            findings += feedback_findings(data["feedback"], settings, where=f" on {name}")
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


# --- The page ----------------------------------------------------------------------------------------


def instances(settings: Settings) -> list[tuple[str, str]]:
    """(name, connection id) of each execution instance the page shows."""
    names: list[str] = []
    if settings.runs_control:
        try:
            names = execution_connections()
        except Exception as exc:
            log.warning("Cannot list the mc_exec_* connections: %s", exc)
    found = [(name, EXEC_CONN_PREFIX + name) for name in names]
    if not found and settings.runs_execution:
        found = [("this instance", settings.execution_conn_id)]
    return found


def _instance(name: str, conn_id: str, settings: Settings) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "connection": conn_id, "error": None}
    try:
        with _connect(conn_id) as conn:
            data.update(
                indicators.instance_overview(
                    conn, settings.monitoring.alerts, settings.monitoring.feedback_window
                )
            )
            beats = read_heartbeats(conn)
    except (ConfigError, psycopg.Error) as exc:
        data["error"] = _problem(exc)
        return data
    data["heartbeats"] = [
        beats[w].to_json() if w in beats else {"workflow": w, "last_run": None, "age_seconds": None}
        for w in (*TECHNICAL_WORKFLOWS, CLEANUP_WORKFLOW, BOUNCE_WORKFLOW)
    ]
    judged = heartbeats.workflows_state(beats, settings.monitoring.heartbeat_max_age)
    data["workflows"] = judged.to_json(name if conn_id.startswith(EXEC_CONN_PREFIX) else None)
    return data


def _archive_lags(settings: Settings) -> dict[str, float] | None:
    try:
        with _connect(settings.control_conn_id) as conn:
            return indicators.archive_lags(conn)
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
            states = dag_states([archiving_dag_id(n) for n in exec_names])
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
    findings = run_doctor(settings) if with_doctor else []
    return {
        "instances": shown,
        "alerts": dataclasses.asdict(settings.monitoring.alerts),
        "doctor": {"exit_code": doctor.exit_code(findings), "findings": [f.to_json() for f in findings]},
    }
