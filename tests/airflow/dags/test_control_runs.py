"""Control workflows run by Airflow: publishTemplates reaches every instance, archiving backfills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.control.archiving import archive_interval
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.publishing import CONTROL_TABLE, latest_template, publish_templates
from messagecenter.templates.spec import TemplateSpec

pytestmark = pytest.mark.airflow


def run_dag(dagbag: Callable[[], Any], dag_id: str) -> Any:
    return dagbag().dags[dag_id].test()


def test_publish_templates_reaches_every_instance_and_routing_switches(
    control_env: dict[str, str], dagbag: Callable[[], Any]
) -> None:
    with psycopg.connect(control_env["control"]) as control:
        publish_templates(control, [TemplateSpec("OTP", 1, text="v1 {{ ctx.code }}")], table=CONTROL_TABLE)
    assert run_dag(dagbag, "publishTemplates").state == "success"
    for name in ("paris", "tokyo"):
        with psycopg.connect(control_env[name]) as conn:
            assert latest_template(conn, "OTP", "sms").text == "v1 {{ ctx.code }}"  # type: ignore[union-attr]

    with psycopg.connect(control_env["control"]) as control:
        (v2,) = publish_templates(
            control, [TemplateSpec("OTP", 1, text="v2 {{ ctx.code }}")], table=CONTROL_TABLE
        )
    assert run_dag(dagbag, "publishTemplates").state == "success"
    assert run_dag(dagbag, "publishTemplates").state == "success"  # a rerun is harmless
    with psycopg.connect(control_env["paris"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM mc.published_template").fetchone()[0] == 2  # type: ignore[index]
        [event_id] = store.insert_events(
            conn,
            "rt",
            [event_from_dict({"type": "OTP", "channel": "sms", "ctx": {"code": 1}})],
            instance_id=1,
        ).ids
        for shard in execution.split_queue(conn, "rt", ProcessingSettings()):
            execution.link_templates(conn, shard)
        linked = conn.execute(
            "SELECT template_id, template_version FROM mc.rt_event WHERE id = %s", (event_id,)
        )
        assert linked.fetchone() == (v2.template_id, v2.version)


def test_one_instance_down_does_not_stop_the_others(
    control_env: dict[str, str], dagbag: Callable[[], Any], mc_env: Callable[..., None]
) -> None:
    mc_env(
        AIRFLOW_CONN_MC_EXEC_TOKYO="postgresql://postgres@127.0.0.1:1/down?instance_id=2&connect_timeout=2"
    )
    with psycopg.connect(control_env["control"]) as control:
        publish_templates(control, [TemplateSpec("OTP", 1, text="hello")], table=CONTROL_TABLE)
    dag = dagbag().dags["publishTemplates"]
    for task in dag.tasks:  # an unreachable instance is retried 3 times a minute apart: not here
        task.retries = 0
    run = dag.test()
    assert run.state == "failed"  # tokyo's task failed, and says so
    states = {ti.map_index: ti.state for ti in run.get_task_instances() if ti.task_id == "publish_templates"}
    assert sorted(states.values()) == ["failed", "success"]
    with psycopg.connect(control_env["paris"]) as conn:
        assert latest_template(conn, "OTP", "sms").text == "hello"  # type: ignore[union-attr]


def airflow(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def messagecenter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "messagecenter", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": "plugins"},
        check=False,
    )


def fingerprint(conn: psycopg.Connection[Any], table: str, low: datetime, high: datetime) -> tuple[int, str]:
    return conn.execute(  # type: ignore[return-value]
        "SELECT count(*),"
        " md5(string_agg(concat_ws(',', id, event_type, status, last_modified), '|' ORDER BY id))"
        f" FROM {table} WHERE last_modified >= %s AND last_modified < %s",
        (low, high),
    ).fetchone()


def test_backfill_re_archives_exactly_the_period_without_duplicates(
    control_env: dict[str, str], mc_env: Callable[..., None]
) -> None:
    mc_env(MC_ARCHIVE_OVERLAP_SECONDS=0)
    day = datetime(2026, 11, 1, tzinfo=UTC)
    with psycopg.connect(control_env["paris"], autocommit=True) as exec_conn:
        events = [event_from_dict({"type": "OTP", "channel": "sms", "ctx": {"n": n}}) for n in range(60)]
        ids = store.insert_events(exec_conn, "batch", events, instance_id=1).ids
        for n, event_id in enumerate(ids):  # 10 events in each hour from 00:00 to 06:00
            exec_conn.execute(
                "UPDATE mc.batch_event SET status = 2, last_modified = %s WHERE id = %s",
                (day + timedelta(minutes=6 * n + 1), event_id),
            )
        with psycopg.connect(control_env["control"], autocommit=True) as control:
            now = exec_conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
            archive_interval(exec_conn, control, instance="paris", instance_id=1, start=now, end=now)
            # The archive of 01:00-04:00 is lost or damaged: re-archive that period.
            control.execute(
                "DELETE FROM mc.event_histo WHERE last_modified >= %s AND last_modified < %s AND id %% 2 = 0",
                (day + timedelta(hours=1), day + timedelta(hours=4)),
            )
            control.execute(
                "UPDATE mc.event_histo SET status = 0 WHERE last_modified >= %s", (day + timedelta(hours=2),)
            )

            airflow("dags", "reserialize")
            period_args = ("--from-date", (day + timedelta(hours=1)).isoformat(),
                           "--to-date", (day + timedelta(hours=3)).isoformat())  # fmt: skip
            created = messagecenter("archiving", "backfill", "paris", *period_args, "--no-wait")
            assert created.returncode == 0, created.stderr[-3000:]
            assert json.loads(created.stdout)["runs"] == {"queued": 3}
            # No scheduler here marks it complete: a second one is refused, clearly, after --timeout.
            again = messagecenter("archiving", "backfill", "paris", *period_args, "--timeout", "1")
            assert again.returncode == 1
            backfill_id = json.loads(created.stdout)["backfill_id"]
            assert f"error: backfill {backfill_id} of mcArchiving_paris is still running" in again.stderr
            assert "one backfill per DAG at a time" in again.stderr
            assert "Traceback" not in again.stderr
            runs = backfill_runs("mcArchiving_paris")
            assert [(r[1] - day, r[2] - day) for r in runs] == [
                (timedelta(hours=h), timedelta(hours=h + 1)) for h in (1, 2, 3)
            ]
            for run_id, *_ in runs:
                airflow("tasks", "test", "mcArchiving_paris", "archive_events", run_id)

            period = (day + timedelta(hours=1), day + timedelta(hours=4))
            assert fingerprint(control, "mc.event_histo", *period) == fingerprint(
                exec_conn, "mc.batch_event", *period
            )
            assert fingerprint(control, "mc.event_histo", *period)[0] == 30
            # Outside the period the (damaged) archive is untouched: exactly that period was re-archived.
            after = control.execute("SELECT count(*) FROM mc.event_histo WHERE status = 0").fetchone()[0]  # type: ignore[index]
            assert after == 20  # 04:00-06:00 keep the damage
            # Rerunning a backfilled run changes nothing.
            airflow("tasks", "test", "mcArchiving_paris", "archive_events", runs[0][0])
            assert control.execute("SELECT events_copied FROM mc.archive_state").fetchone()[0] == 0  # type: ignore[index]
            assert control.execute("SELECT count(*), count(DISTINCT id) FROM mc.event_histo").fetchone() == (
                60,
                60,
            )


def backfill_runs(dag_id: str) -> list[tuple[str, datetime, datetime]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        rows = session.execute(
            select(DagRun.run_id, DagRun.data_interval_start, DagRun.data_interval_end)
            .where(DagRun.dag_id == dag_id, DagRun.run_type == "backfill")
            .order_by(DagRun.data_interval_start)
        ).all()
    return [(r[0], r[1].astimezone(UTC), r[2].astimezone(UTC)) for r in rows]
