"""An instance whose technical workflows never reported is waiting, not failing: a doctor warning
(exit 2), nothing published and publishTemplates green until its heartbeats appear. One whose
workflows ran and stopped is still an error."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import pytest

from messagecenter.core.settings import Settings
from messagecenter.execution.heartbeat import TECHNICAL_WORKFLOWS, read_heartbeats, record_heartbeat
from messagecenter.monitoring import doctor
from messagecenter.monitoring.heartbeats import workflows_state
from messagecenter.templates.publishing import CONTROL_TABLE, latest_template, publish_templates
from messagecenter.templates.spec import TemplateSpec
from tests.support.builders import airflow_uri

WAITING_LINE = (
    "start its workflows: turn on rtEventsProcessing, batchEventsProcessing, updateEventsStatus "
    "in the Airflow of instance lyon"
)


def all_on(dag_ids: Iterable[str]) -> dict[str, bool | None]:
    return dict.fromkeys(dag_ids, False)


@pytest.fixture
def two_instances(make_db: Any, mc_env: Callable[..., None]) -> dict[str, str]:
    """Control with two registered instances: paris runs (fresh heartbeats), lyon never started;
    both archived half an hour ago, so nothing else is worth a warning."""
    dsns = {"control": make_db(), "paris": make_db(), "lyon": make_db()}
    mc_env(
        AIRFLOW_CONN_MC_CONTROL=airflow_uri(dsns["control"]),
        AIRFLOW_CONN_MC_EXEC_PARIS=f"{airflow_uri(dsns['paris'])}?instance_id=1",
        AIRFLOW_CONN_MC_EXEC_LYON=f"{airflow_uri(dsns['lyon'])}?instance_id=2",
    )
    with psycopg.connect(dsns["paris"], autocommit=True) as conn:
        for workflow in TECHNICAL_WORKFLOWS:
            record_heartbeat(conn, workflow, 0, 0.0)
    with psycopg.connect(dsns["control"], autocommit=True) as conn:
        for name, instance_id in (("paris", 1), ("lyon", 2)):
            conn.execute(
                "INSERT INTO mc.archive_state VALUES (%s, %s, now() - interval '30 minutes', now(), "
                "now() - interval '90 minutes', now() - interval '30 minutes', 0, 0, 0, 0, 0)",
                (name, instance_id),
            )
    return dsns


def control_doctor() -> list[doctor.Finding]:
    from messagecenter.airflow.readers import control_findings

    return control_findings(Settings(), read_states=all_on, instances=lambda: ["lyon", "paris"])


def test_a_registered_instance_never_started_is_a_doctor_warning_exit_2(
    two_instances: dict[str, str],
) -> None:
    findings = control_doctor()
    assert doctor.exit_code(findings) == doctor.WARNINGS == 2  # not 1: nothing is wrong, lyon waits
    [waiting] = [f for f in findings if f.level != "ok"]
    assert (waiting.level, waiting.what) == ("warning", "technical workflows on lyon")
    assert waiting.message.startswith("instance lyon is waiting: ")
    assert WAITING_LINE in waiting.message
    verdict = f"ready, with warnings: {len(findings) - 1} ok, 1 warning(s), 0 error(s)"
    assert doctor.render_table(findings).endswith(verdict)


def test_a_registered_instance_whose_workflows_stopped_is_a_doctor_error(
    two_instances: dict[str, str],
) -> None:
    with psycopg.connect(two_instances["lyon"], autocommit=True) as conn:
        for workflow in TECHNICAL_WORKFLOWS:
            record_heartbeat(conn, workflow, 0, 0.0)
        conn.execute("UPDATE mc.workflow_heartbeat SET last_run = now() - interval '1 day'")
    findings = control_doctor()
    assert doctor.exit_code(findings) == doctor.ERRORS
    errors = {f.what: f.message for f in findings if f.level == "error"}
    assert set(errors) == {f"{w} heartbeat on lyon" for w in TECHNICAL_WORKFLOWS}
    assert errors["batchEventsProcessing heartbeat on lyon"].startswith("last seen 24.0 h ago")
    assert "turn it on in the Airflow of instance lyon" in errors["batchEventsProcessing heartbeat on lyon"]


def test_the_page_shows_the_waiting_instance_with_what_to_start(two_instances: dict[str, str]) -> None:
    from messagecenter.airflow.readers import _instance

    lyon = _instance("lyon", "mc_exec_lyon", Settings())["workflows"]
    assert (lyon["state"], lyon["stopped"]) == ("waiting", [])
    assert lyon["waiting"] == list(TECHNICAL_WORKFLOWS)
    assert WAITING_LINE in lyon["message"]
    assert _instance("paris", "mc_exec_paris", Settings())["workflows"]["state"] == "started"


def test_stopped_wins_over_waiting_and_only_fresh_heartbeats_are_started(conn: psycopg.Connection) -> None:
    assert workflows_state(read_heartbeats(conn), 600).state == "waiting"
    record_heartbeat(conn, "rtEventsProcessing", 0, 0.0)
    partly = workflows_state(read_heartbeats(conn), 600)
    assert (partly.state, partly.waiting) == ("waiting", ("batchEventsProcessing", "updateEventsStatus"))
    conn.execute("UPDATE mc.workflow_heartbeat SET last_run = now() - interval '1 hour'")
    stopped = workflows_state(read_heartbeats(conn), 600)
    assert (stopped.state, stopped.stopped) == ("stopped", ("rtEventsProcessing",))
    assert "rtEventsProcessing ran, then stopped reporting heartbeats" in stopped.message("paris")
    for workflow in TECHNICAL_WORKFLOWS:
        record_heartbeat(conn, workflow, 0, 0.0)
    assert workflows_state(read_heartbeats(conn), 600).state == "started"


@pytest.mark.airflow
def test_publish_templates_waits_for_a_never_started_instance_then_reaches_it(
    control_env: dict[str, str],
    dagbag: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with psycopg.connect(control_env["paris"]) as conn:  # registered, its workflows never started
        conn.execute("DELETE FROM mc.workflow_heartbeat")
    with psycopg.connect(control_env["control"]) as control:
        publish_templates(control, [TemplateSpec("OTP", 1, text="hello")], table=CONTROL_TABLE)

    run = dagbag().dags["publishTemplates"].test()
    assert run.state == "success"  # green: waiting is not failing
    states = sorted(ti.state for ti in run.get_task_instances() if ti.task_id == "publish_templates")
    assert states == ["skipped", "success"]  # paris waits, tokyo got its templates
    log = capsys.readouterr().out
    assert "instance paris is waiting: rtEventsProcessing, batchEventsProcessing, updateEventsStatus" in log
    assert WAITING_LINE.replace("lyon", "paris") in log
    with psycopg.connect(control_env["paris"]) as conn:
        assert latest_template(conn, "OTP", "sms") is None
    with psycopg.connect(control_env["tokyo"]) as conn:
        assert latest_template(conn, "OTP", "sms").text == "hello"  # type: ignore[union-attr]

    with psycopg.connect(control_env["paris"]) as conn:  # its workflows are turned on and report
        for workflow in TECHNICAL_WORKFLOWS:
            record_heartbeat(conn, workflow, 0, 0.0)
    again = dagbag().dags["publishTemplates"].test()
    assert again.state == "success"
    assert {ti.state for ti in again.get_task_instances() if ti.task_id == "publish_templates"} == {"success"}
    with psycopg.connect(control_env["paris"]) as conn:
        assert latest_template(conn, "OTP", "sms").text == "hello"  # type: ignore[union-attr]
