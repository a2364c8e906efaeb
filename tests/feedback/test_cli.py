"""``python -m messagecenter quarantine ...`` and ``feedback ...`` on a real execution database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from messagecenter import cli
from messagecenter.core.settings import FeedbackSettings
from messagecenter.feedback import rules
from messagecenter.feedback.apply import Feedback, apply_feedback
from tests.support.builders import REPO


@pytest.fixture(autouse=True)
def _server_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``main`` sets for itself, set here so that it is undone after each test."""
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")


@pytest.fixture
def run(db_dsn: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI in this process against the test's database: (exit code, stdout, stderr)."""

    def run_cli(*args: str) -> tuple[int, str, str]:
        code = cli.main([*args, "--dsn", db_dsn])
        out, err = capsys.readouterr()
        return code, out, err

    return run_cli


def test_quarantine_add_show_list_release(run: Any) -> None:
    code, out, _ = run(
        "quarantine",
        "add",
        "email",
        "Bob@Example.com",
        "--status",
        "denylisted",
        "--reason",
        "asked by phone",
    )
    assert code == 0
    added = json.loads(out)
    assert (added["address"], added["status"], added["reason"], added["source"]) == (
        "bob@example.com",
        "denylisted",
        "asked by phone",
        "cli",
    )
    assert run("quarantine", "add", "sms", "+33600000000")[0] == 0

    code, out, _ = run("quarantine", "show", "email", "BOB@example.com")
    assert (code, json.loads(out)["status"]) == (0, "denylisted")

    code, out, _ = run("quarantine", "list", "--json")
    assert code == 0
    assert {(r["channel"], r["address"], r["status"]) for r in json.loads(out)} == {
        ("email", "bob@example.com", "denylisted"),
        ("sms", "+33600000000", "quarantine"),
    }
    code, out, _ = run("quarantine", "list", "--status", "quarantine", "--json")
    assert [r["address"] for r in json.loads(out)] == ["+33600000000"]
    code, out, _ = run("quarantine", "list", "--channel", "email")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["channel", "address", "status"]
    assert [row.split()[:3] for row in rows] == [["email", "bob@example.com", "denylisted"]]

    code, out, _ = run("quarantine", "release", "email", "bob@example.com")
    assert (code, json.loads(out)["status"]) == (0, "valid")
    code, out, _ = run("quarantine", "list", "--json")
    assert [r["address"] for r in json.loads(out)] == ["+33600000000"]


def test_quarantine_refuses_an_unknown_channel_or_a_blank_address(run: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        run("quarantine", "add", "fax", "a@example.com")
    assert exited.value.code == 2
    code, out, err = run("quarantine", "add", "email", "  ")
    assert (code, out) == (2, "")
    assert "address is empty" in err


def test_feedback_rules_add_list_delete(run: Any, conn: psycopg.Connection) -> None:
    code, out, _ = run(
        "feedback",
        "rule-add",
        "custom refusal",
        "--type",
        "hard",
        "--reason",
        "User unknown",
        "--priority",
        "5",
        "--note",
        "seen at ACME",
    )
    assert code == 0
    saved = json.loads(out)
    assert (saved["type"], saved["reason"], saved["priority"]) == ("Hard", "User unknown", 5)
    assert run("feedback", "rule-add", "over quota", "--type", "soft", "--reason", "5")[0] == 0

    code, out, _ = run("feedback", "rules", "--json")
    listed = json.loads(out)
    # Operators' rules first, in priority order, then the seeded ones.
    assert [(r["origin"], r["pattern"], r["reason"]) for r in listed[:2]] == [
        ("operator", "over quota", "Mailbox full"),
        ("operator", "custom refusal", "User unknown"),
    ]
    assert {r["origin"] for r in listed[2:]} == {"seed"}
    assert listed[1]["note"] == "seen at ACME"
    code, out, _ = run("feedback", "rules")
    assert "custom refusal" in out
    assert out.splitlines()[0].split()[:3] == ["id", "origin", "priority"]

    assert run("feedback", "rule-delete", str(saved["id"]))[0] == 0
    code, out, err = run("feedback", "rule-delete", str(saved["id"]))
    assert code == 1
    assert "no operator rule" in err
    assert conn.execute("SELECT pattern FROM mc.feedback_rule").fetchall() == [("over quota",)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["(unclosed", "--type", "hard", "--reason", "1"], "not a regular expression"),
        (["fine", "--type", "hard", "--reason", "no such reason"], "unknown failure reason"),
        (["fine", "--type", "hard", "--reason", "99"], "unknown failure reason"),
    ],
)
def test_a_bad_rule_saves_nothing(run: Any, conn: psycopg.Connection, args: list[str], says: str) -> None:
    code, out, err = run("feedback", "rule-add", *args)
    assert (code, out) == (2, "")
    assert says in err
    assert conn.execute("SELECT count(*) FROM mc.feedback_rule").fetchone() == (0,)


def test_texts_show_what_to_write_rules_for(run: Any, conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address) "
        "VALUES (1, 'batch', 2, 0, 'a@example.com'), (2, 'batch', 2, 0, 'b@example.com')"
    )
    items = [
        Feedback("mailbox", "failed", event_id=1, text="Frobnicated by the gateway"),
        Feedback("mailbox", "failed", event_id=2, text="550 5.1.1 user unknown"),
    ]
    apply_feedback(conn, items, qualify=rules.qualifier(conn), rules=FeedbackSettings())

    code, out, _ = run("feedback", "texts", "--unqualified", "--json")
    assert code == 0
    assert [t["text"] for t in json.loads(out)] == ["frobnicated by the gateway"]
    code, out, _ = run("feedback", "texts", "--json")
    assert {(t["text"], t["reason"]) for t in json.loads(out)} == {
        ("frobnicated by the gateway", "Not defined"),
        ("550 5.1.1 user unknown", "User unknown"),
    }

    assert run("feedback", "rule-add", "frobnicated", "--type", "soft", "--reason", "refused")[0] == 0
    code, out, _ = run("feedback", "texts", "--unqualified", "--json")
    assert json.loads(out) == []  # the new rule qualified the text already counted
    code, out, _ = run("feedback", "texts", "--limit", "1")
    assert len(out.splitlines()) == 2


def test_json_output_is_only_json_on_stdout(db_dsn: str) -> None:
    """As a separate process, logs included: stdout parses as JSON."""
    env = {**os.environ, "PYTHONPATH": "plugins", "MC_LOG_LEVEL": "DEBUG"}
    logs = []
    for args in (
        ["quarantine", "add", "email", "x@example.com", "--status", "denylisted"],
        ["quarantine", "list", "--json"],
        ["feedback", "rules", "--json"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "messagecenter", *args, "--dsn", db_dsn],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        json.loads(done.stdout)
        logs.append(done.stderr)
    assert "set to denylisted by cli" in logs[0]  # the log line went to stderr
