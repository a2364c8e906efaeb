"""The standalone intake API (``uvicorn messagecenter.api:app``) in a process of its own, on the
database a benchmark created, as a deployment runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from devstack.stack import postgres_connection

from bench.harness import env
from bench.harness.ports import free_port, wait_http

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def standalone_api(dsn: str, connections: dict[str, str] | None = None) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>``) of the API serving execution database ``dsn``, bearer
    token :data:`TOKEN`, with the ``AIRFLOW_CONN_*`` variables ``connections``; stopped on exit."""
    port = free_port()
    variables = {
        **(connections or {}),
        "AIRFLOW_CONN_MC_EXECUTION": json.dumps(postgres_connection(dsn)),
        "MC_API_TOKENS": TOKEN,
    }
    command = [sys.executable, "-m", "uvicorn", "messagecenter.api:app", "--port", str(port)]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env.child_env(**variables))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/v1/health", AUTH)
        yield base
    finally:
        process.terminate()
        process.wait(30)
