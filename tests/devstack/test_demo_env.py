"""The demo's environment file: `source .demo/env` points `airflow` and the CLI at the demo."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from devstack.demo import write_env_file
from devstack.stack import STACK_MARKER, AirflowConfig


def test_env_file_exports_the_demo_settings_privately(tmp_path: Path) -> None:
    config = AirflowConfig(
        home=tmp_path / "airflow",
        metadata_dsn="host=/tmp/sock dbname=meta user=postgres",
        port=8099,
        extra={
            "AIRFLOW_CONN_MC_EXECUTION": '{"conn_type": "postgres", "host": "/tmp/it\'s"}',
            "MC_API_TOKENS": "t",
        },
    )
    env = {**config.env({"HOME": "/root", "PATH": "/usr/bin"}), STACK_MARKER: "abc"}
    path = write_env_file(tmp_path / "env", env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert STACK_MARKER not in text
    assert "HOME=/root" not in text.replace("AIRFLOW_HOME", "")
    shown = subprocess.run(
        ["bash", "-c", f"source {path} && env"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin"},
    ).stdout.splitlines()
    sourced = dict(line.split("=", 1) for line in shown if "=" in line)
    for name in (
        "AIRFLOW_HOME",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW_CONN_MC_EXECUTION",
        "MC_API_TOKENS",
    ):
        assert sourced[name] == env[name], name
    assert sourced["PYTHONPATH"].split(os.pathsep)[0].endswith("plugins")
    assert sourced["PATH"].endswith(":/usr/bin")


def test_add_instance_creates_a_migrated_database_and_its_connection(pg_admin_dsn: str) -> None:
    import psycopg
    from devstack.demo import add_instance

    from messagecenter.db import schema
    from tests.support.builders import drop_database, dsn_for

    name = f"t{os.getpid()}"
    try:
        connection = add_instance(name, 7, pg_admin_dsn)
        again = add_instance(name, 7, pg_admin_dsn)  # a second run reuses the database
        assert connection == again
        assert connection["schema"] == f"mc_exec_{name}"
        assert connection["extra"] == {"instance_id": 7}
        dsn = dsn_for(pg_admin_dsn, f"mc_exec_{name}")
        with psycopg.connect(dsn) as conn:
            assert (
                schema.current_version(conn, "execution")
                == schema.available_migrations("execution")[-1].version
            )
    finally:
        drop_database(pg_admin_dsn, f"mc_exec_{name}")


def test_add_instance_without_the_demo_env_says_what_to_do() -> None:
    import sys

    from tests.support.builders import REPO

    env = {k: v for k, v in os.environ.items() if k != "MC_DEMO_ADMIN_DSN"}
    env["PYTHONPATH"] = f"{REPO / 'plugins'}:{REPO}"
    done = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--add-instance", "paris"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 1
    assert "source .demo/env" in done.stderr


def test_a_check_on_a_reused_database_starts_with_the_bounce_address_valid(db_dsn: str) -> None:
    import psycopg
    from devstack import demo

    from messagecenter.core.types import Channel
    from messagecenter.feedback import quarantine

    address = demo.BOUNCE_EVENT["email"]
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        quarantine.set_status(conn, Channel.EMAIL, address, quarantine.AddressStatus.QUARANTINE)
    demo.release_bounce_address(db_dsn)
    state = demo.bounce_address_state(db_dsn)
    assert (state.status, state.source) == (quarantine.AddressStatus.VALID, "demo-check")
    demo.release_bounce_address(db_dsn)  # already Valid: left as it is
    assert demo.bounce_address_state(db_dsn).updated == state.updated
