"""The CLI's machine output is only that: stdout parses as JSON (``| jq``), every log goes to stderr.

Each command runs as its own process, as an operator runs it, reading its database through an Airflow
connection: Airflow is imported and configures its logging (at DEBUG here, the noisiest), with a
handler on stdout unless the CLI routes it away.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support.builders import REPO, airflow_uri

SHORT_TOKEN = "abc"  # under 5 characters: Airflow warns it cannot mask it, when it reads mc_api
LONG_TOKEN = "t" * 300


def run_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "messagecenter", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_json_only(done: subprocess.CompletedProcess[str]) -> Any:
    """stdout is one JSON document (for Python and for ``python -m json.tool``); Airflow logged to stderr."""
    value = json.loads(done.stdout)
    tool = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=done.stdout, capture_output=True, text=True, check=False
    )
    assert tool.returncode == 0, tool.stderr
    assert "[airflow." in done.stderr  # Airflow's own log lines, where logs belong
    return value


@pytest.fixture
def cli_env(db_dsn: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": "plugins",
        "MC_LOG_LEVEL": "DEBUG",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
        "AIRFLOW_CONN_MC_EXECUTION": airflow_uri(db_dsn),
        "MC_ROLE": "execution",
    }


@pytest.mark.parametrize("token", [SHORT_TOKEN, LONG_TOKEN], ids=["short-token", "long-token"])
def test_doctor_json_is_json_whatever_airflow_logs(cli_env: dict[str, str], token: str) -> None:
    env = {**cli_env, "AIRFLOW_CONN_MC_API": json.dumps({"conn_type": "generic", "password": token})}
    done = run_cli("doctor", "--json", env=env)
    assert done.returncode in (0, 1, 2), done.stderr
    report = assert_json_only(done)
    assert report["exit_code"] == done.returncode
    api = next(f for f in report["findings"] if f["what"] == "API tokens")
    assert api["level"] == "ok"
    if token == SHORT_TOKEN:  # the warning that came before the JSON on stdout
        assert "too short" in done.stderr


def test_every_command_with_machine_output_prints_only_json(cli_env: dict[str, str]) -> None:
    pushed = run_cli("events", "push", "-", env=cli_env, stdin='{"type": "OTP", "channel": "sms"}')
    assert pushed.returncode == 0, pushed.stderr
    event_id = assert_json_only(pushed)["id"]
    read = run_cli("events", "get", "rt", str(event_id), env=cli_env)
    assert read.returncode == 0, read.stderr
    assert assert_json_only(read)["id"] == event_id
    for args in (
        ["quarantine", "list", "--json"],
        ["feedback", "rules", "--json"],
        ["feedback", "texts", "--json"],
    ):
        done = run_cli(*args, env=cli_env)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        assert isinstance(assert_json_only(done), dict | list), args
