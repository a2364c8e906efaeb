"""Scale-out: a real Celery worker runs the execution tasks (``MC_EXECUTION_QUEUE``).

A scheduler with the CeleryExecutor, the API server and the DAG processor on a fresh metadata
database, a Redis broker, and one ``airflow celery worker`` listening only on a queue of its own:
the DAGs route their tasks there, so batch events pushed through the intake API end Sent only if
the worker ran ``batchEventsProcessing`` and ``updateEventsStatus``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from devstack.stack import AirflowConfig, Stack, postgres_connection, sqlalchemy_uri

from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates
from tests.support.builders import create_database, drop_database
from tests.support.sinks import free_port

pytestmark = pytest.mark.airflow

REDIS = ("127.0.0.1", 6379)
EVENTS = 20
TOKEN = "celery-test-token"
DAGS = ("batchEventsProcessing", "updateEventsStatus")


def _redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def metadata_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty Airflow metadata database."""
    name = f"mc_airflow_celery_{os.getpid()}"
    yield create_database(pg_admin_dsn, name)
    drop_database(pg_admin_dsn, name)


def _wait(what: str, check: Any, stack: Stack, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        if result := check():
            return result
        time.sleep(1)
    logs = {c.name: c.log_path for c in stack.components.values()}
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; component logs: {logs}")


def test_celery_worker_runs_the_execution_tasks(
    db_dsn: str, metadata_dsn: str, smtp_sink: Any, tmp_path: Path
) -> None:
    if not _redis_answers():
        pytest.skip("no Redis answers on 127.0.0.1:6379 (the Celery broker this test needs)")
    queue = f"mc_exec_celery_{os.getpid()}"  # a queue no other worker listens on
    template = {"event_type": "WELCOME", "channel": "email", "subject": "Hi", "text": "{{ ctx.n }}"}
    with psycopg.connect(db_dsn) as conn:
        publish_templates(conn, parse_templates({"templates": [template]}))
    config = AirflowConfig(
        home=tmp_path / "airflow",
        metadata_dsn=metadata_dsn,
        port=free_port(),
        executor="CeleryExecutor",
        extra={
            "AIRFLOW_CONN_MC_EXECUTION": json.dumps(postgres_connection(db_dsn)),
            "AIRFLOW_CONN_MC_SMTP": smtp_sink.connection(),
            "MC_EXECUTION_QUEUE": queue,
            "MC_API_TOKENS": TOKEN,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/5",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_uri(metadata_dsn),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            # Only the worker may run tasks: anything left on the default queue would never run.
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        },
    )
    config.write_passwords_file()
    with Stack(config, tmp_path / "logs") as stack:
        stack.migrate()
        stack.start_airflow(celery_queues=[queue])
        stack.wait_healthy(timeout=180)
        stack.wait_for_dags(DAGS, timeout=120)
        intake = httpx.Client(
            base_url=f"{config.base_url}/messagecenter/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        events = [{"type": "WELCOME", "email": f"u{n}@example.com", "ctx": {"n": n}} for n in range(EVENTS)]
        pushed = intake.post("/events/batch", json={"events": events})
        assert pushed.status_code == 201, pushed.text
        ids = pushed.json()["ids"]

        # Turning the DAG on starts a run at once (catch-up off: the latest interval).
        stack.unpause(["batchEventsProcessing"])
        _wait("the delivery of every event", lambda: len(smtp_sink.recorder.received) >= EVENTS, stack, 120)
        stack.unpause(["updateEventsStatus"])

        def all_sent() -> bool:
            return all(intake.get(f"/events/batch/{i}").json()["status"] == 2 for i in ids)

        _wait("every event to be Sent", all_sent, stack, 120)

        runs = stack.rest("GET", "/dags/batchEventsProcessing/dagRuns").json()["dag_runs"]
        run_id = next(r["dag_run_id"] for r in runs if r["state"] == "success")
        tis = stack.rest("GET", f"/dags/batchEventsProcessing/dagRuns/{run_id}/taskInstances").json()
        ran = [ti for ti in tis["task_instances"] if ti["state"] == "success"]
        worker_log = stack.components["celery-worker"].log_path.read_text()

    assert sorted(smtp_sink.recorder.event_ids()) == sorted(ids)
    assert {ti["task_id"] for ti in ran} >= {"split_queue", "link_templates", "deliver_messages"}
    assert {ti["queue"] for ti in ran} == {queue}
    assert all(ti["hostname"] for ti in ran)
    assert "execute_workload" in worker_log or "Task execute_workload" in worker_log
