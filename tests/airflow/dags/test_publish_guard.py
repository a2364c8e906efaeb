"""publishTemplates deploys only on instances whose technical workflows run (heartbeats); workflows
that ran and stopped fail the instance's task (never-started ones: tests/dags/test_waiting_instances.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from messagecenter.templates.publishing import CONTROL_TABLE, latest_template, publish_templates
from messagecenter.templates.spec import TemplateSpec

pytestmark = pytest.mark.airflow


def test_an_instance_whose_workflows_stopped_is_refused_the_others_still_get_theirs(
    control_env: dict[str, str],
    dagbag: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with psycopg.connect(control_env["tokyo"]) as conn:  # two of tokyo's workflows stopped a day ago
        conn.execute(
            "UPDATE mc.workflow_heartbeat SET last_run = now() - interval '1 day' "
            "WHERE workflow <> 'rtEventsProcessing'"
        )
    with psycopg.connect(control_env["control"]) as control:
        publish_templates(control, [TemplateSpec("OTP", 1, text="hello")], table=CONTROL_TABLE)
    dag = dagbag().dags["publishTemplates"]
    run = dag.test()
    assert run.state == "failed"
    states = {ti.map_index: ti.state for ti in run.get_task_instances() if ti.task_id == "publish_templates"}
    assert sorted(states.values()) == ["failed", "success"]  # failed at once: no retry helps
    log = capsys.readouterr().out
    assert (
        "templates not published on tokyo: its technical workflows batchEventsProcessing, "
        "updateEventsStatus stopped"
    ) in log
    assert "airflow dags unpause batchEventsProcessing" in log
    with psycopg.connect(control_env["paris"]) as conn:
        assert latest_template(conn, "OTP", "sms").text == "hello"  # type: ignore[union-attr]
    with psycopg.connect(control_env["tokyo"]) as conn:
        assert latest_template(conn, "OTP", "sms") is None

    forced = dagbag().dags["publishTemplates"].test(run_conf={"force": True})
    assert forced.state == "success"
    with psycopg.connect(control_env["tokyo"]) as conn:
        assert latest_template(conn, "OTP", "sms").text == "hello"  # type: ignore[union-attr]


def test_old_heartbeats_count_as_stopped(
    control_env: dict[str, str],
    dagbag: Callable[[], Any],
    mc_env: Callable[..., None],
) -> None:
    mc_env(MC_HEARTBEAT_MAX_AGE_SECONDS=60)
    with psycopg.connect(control_env["paris"]) as conn:
        conn.execute("UPDATE mc.workflow_heartbeat SET last_run = now() - interval '5 minutes'")
    with psycopg.connect(control_env["control"]) as control:
        publish_templates(control, [TemplateSpec("OTP", 1, text="hello")], table=CONTROL_TABLE)
    run = dagbag().dags["publishTemplates"].test()
    assert run.state == "failed"
    with psycopg.connect(control_env["paris"]) as conn:
        assert latest_template(conn, "OTP", "sms") is None
