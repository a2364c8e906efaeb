from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from messagecenter.execution.heartbeat import record_heartbeat
from tests.support.builders import airflow_uri, run_cli


def test_templates_load_example(db_dsn: str, conn: psycopg.Connection) -> None:
    done = run_cli("templates", "load", "include/templates/example.yaml", "--dsn", db_dsn)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["created"], summary["unchanged"]) == (5, 0)
    assert [
        (t["event_type"], t["channel"], t["template_id"], t["version"], t["result"])
        for t in summary["templates"]
    ] == [
        ("ORDER_CONFIRMATION", "email", 1, 1, "created"),
        ("OTP", "sms", 2, 1, "created"),
        ("ORDER_SHIPPED", "ios", 3, 1, "created"),
        ("ORDER_SHIPPED", "android", 4, 1, "created"),
        ("PASSWORD_RESET", "email", 5, 1, "created"),
    ]
    rows = conn.execute(
        "SELECT event_type, channel, version, subject, text, data FROM mc.published_template ORDER BY id"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("ORDER_CONFIRMATION", 0, 1),
        ("OTP", 1, 1),
        ("ORDER_SHIPPED", 41, 1),
        ("ORDER_SHIPPED", 42, 1),
        ("PASSWORD_RESET", 0, 1),
    ]
    assert rows[1][4] == "Your code is {{ ctx.code }}"
    assert rows[2][3] == "Shipped"
    assert rows[3][5] == {"orderId": "{{ ctx.orderId }}"}

    again = run_cli("templates", "load", "include/templates/example.yaml", "--dsn", db_dsn)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["unchanged"]) == (0, 5)
    assert {t["result"] for t in summary["templates"]} == {"unchanged"}
    assert conn.execute("SELECT count(*) FROM mc.published_template").fetchone()[0] == 5


def test_templates_load_broken_file_exits_2_and_writes_nothing(
    tmp_path: Path, db_dsn: str, conn: psycopg.Connection
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps(
            {
                "templates": [
                    {"event_type": "OTP", "channel": "sms", "text": "Your code is {{ ctx.code }}"},
                    {"event_type": "FAX", "channel": "fax", "text": "x"},
                ]
            }
        )
    )
    done = run_cli("templates", "load", str(broken), "--dsn", db_dsn)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    assert "templates[1].channel: unknown channel 'fax'" in done.stderr
    assert conn.execute("SELECT count(*) FROM mc.published_template").fetchone()[0] == 0


def test_templates_load_on_control_then_publish_on_an_execution_instance(make_db: Any) -> None:
    control, execution = make_db(), make_db()
    loaded = run_cli(
        "templates", "load", "include/templates/example.yaml", "--dsn", control, "--target", "control"
    )
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["target"] == "control (mc.template)"
    with psycopg.connect(execution) as conn:  # control's master templates do not route by themselves
        assert conn.execute("SELECT count(*) FROM mc.published_template").fetchone()[0] == 0
    env = {"AIRFLOW_CONN_MC_CONTROL": airflow_uri(control)}
    waiting = run_cli("templates", "publish", "--dsn", execution, env=env)
    assert waiting.returncode == 0, waiting.stderr  # its technical workflows never ran: it waits
    assert waiting.stdout.startswith("nothing published: this instance is waiting: rtEventsProcessing,")
    assert "--force" in waiting.stdout
    published = run_cli("templates", "publish", "--dsn", execution, "--force", env=env)
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("5 new template version(s) published")
    with psycopg.connect(execution) as conn:  # once the workflows run, no override is needed
        for workflow in ("rtEventsProcessing", "batchEventsProcessing", "updateEventsStatus"):
            record_heartbeat(conn, workflow, 0, 0.0)
    assert run_cli("templates", "publish", "--dsn", execution, env=env).stdout.startswith("0 new")
    with psycopg.connect(control) as c, psycopg.connect(execution) as e:
        query = "SELECT template_id, version, content_hash FROM mc.{} ORDER BY 1"
        assert (
            c.execute(query.format("template")).fetchall()
            == e.execute(query.format("published_template")).fetchall()
        )
