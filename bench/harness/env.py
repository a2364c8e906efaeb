"""The environment of a benchmark: its sizes, an Airflow home of its own, the Airflow connections it
sets, and the environment and command of its child processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Every size of every benchmark times this (a smoke run: MC_BENCH_SCALE=0.01); an explicit size wins.
SCALE = float(os.environ.get("MC_BENCH_SCALE", "1"))


def size(name: str | None, default: int, minimum: int = 1) -> int:
    """Size ``name`` from the environment, else ``default`` times ``MC_BENCH_SCALE`` (at least
    ``minimum``); ``name`` None: a size no variable sets."""
    if name and os.environ.get(name):
        return int(os.environ[name])
    return max(minimum, round(default * SCALE))


def seconds(name: str, default: float) -> float:
    """Duration ``name`` from the environment, else ``default`` times ``MC_BENCH_SCALE``."""
    if os.environ.get(name):
        return float(os.environ[name])
    return default * SCALE


def isolate_airflow() -> None:
    """Airflow (imported by the transports and the API) gets a throw-away home, never the developer's;
    set before any child process starts, so they all share it."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mc-bench-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


def quiet_logging() -> None:
    """Warnings only, on stderr: the figures go to stdout."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def connection(base: dict[str, Any], **extra: Any) -> str:
    """``base`` (an Airflow connection in JSON form) with ``extra`` merged into its extras, as the
    value of an ``AIRFLOW_CONN_*`` variable."""
    return json.dumps({**base, "extra": {**base.get("extra", {}), **extra}})


def child_env(**variables: str) -> dict[str, str]:
    """This process's environment plus ``variables``, with the runtime package and the repository
    (``bench``, ``devstack``) importable: what the Makefile's ``bench`` target sets."""
    path = os.pathsep.join([str(REPO / "plugins"), str(REPO)])
    return {**os.environ, "PYTHONPATH": path, **variables}


def run_json_child(*args: str) -> dict[str, Any]:
    """Run ``python args...`` in a fresh interpreter and return the JSON object it prints (a child
    measures itself, e.g. its own peak RSS, and reports it that way)."""
    done = subprocess.run([sys.executable, *args], env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{args[:2]} exited with {done.returncode}: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result
