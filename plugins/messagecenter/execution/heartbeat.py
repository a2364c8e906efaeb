"""Workflow heartbeats: each execution workflow records on its own database when it last ran.

``mc.workflow_heartbeat`` holds one row per workflow (its DAG id): when it last finished a pass,
how many rows that pass handled and how long it took. The real-time drain, which runs for minutes,
also refreshes its row while it runs (:class:`Pulse`), so a live drain never looks stopped. The
doctor, the Message Center page and ``publishTemplates`` read them: templates are deployed only on
an instance whose technical workflows are started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import psycopg

from messagecenter.core.errors import ConfigError
from messagecenter.db.queries import query

log = logging.getLogger(__name__)

RT_WORKFLOW = "rtEventsProcessing"
BATCH_WORKFLOW = "batchEventsProcessing"
STATUS_WORKFLOW = "updateEventsStatus"
CLEANUP_WORKFLOW = "mcCleanup"
# The technical workflows that must be started before templates are deployed on an instance.
TECHNICAL_WORKFLOWS: tuple[str, ...] = (RT_WORKFLOW, BATCH_WORKFLOW, STATUS_WORKFLOW)

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


@dataclass(frozen=True)
class Heartbeat:
    """The last pass of one workflow on one execution instance."""

    workflow: str
    last_run: datetime
    last_rows: int
    last_seconds: float
    runs: int
    total_rows: int
    age_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "last_run": self.last_run.isoformat(),
            "last_rows": self.last_rows,
            "last_seconds": round(self.last_seconds, 3),
            "runs": self.runs,
            "total_rows": self.total_rows,
            "age_seconds": round(self.age_seconds, 1),
        }


def record_heartbeat(conn: psycopg.Connection[Any], workflow: str, rows: int, seconds: float) -> None:
    """Record that ``workflow`` finished a pass that handled ``rows`` rows in ``seconds``."""
    conn.execute(query("record_heartbeat"), {"workflow": workflow, "rows": rows, "seconds": seconds})


def touch_heartbeat(conn: psycopg.Connection[Any], workflow: str) -> None:
    """Record that ``workflow`` is alive (a long pass still running); its counts stay."""
    conn.execute(query("touch_heartbeat"), {"workflow": workflow})


def read_heartbeats(conn: psycopg.Connection[Any]) -> dict[str, Heartbeat]:
    """Every workflow's heartbeat, by workflow."""
    rows = conn.execute(query("read_heartbeats")).fetchall()
    return {row[0]: Heartbeat(*row) for row in rows}


def stale_workflows(
    heartbeats: Mapping[str, Heartbeat],
    max_age_seconds: float,
    workflows: Iterable[str] = TECHNICAL_WORKFLOWS,
) -> list[str]:
    """The ``workflows`` with no heartbeat, or none in the last ``max_age_seconds``."""
    return [
        name
        for name in workflows
        if (beat := heartbeats.get(name)) is None or beat.age_seconds > max_age_seconds
    ]


class WorkflowsNotStarted(ConfigError):
    """Templates are deployed only on an instance whose technical workflows are started."""

    def __init__(self, instance: str, workflows: list[str], max_age_seconds: float) -> None:
        self.instance = instance
        self.workflows = workflows
        unpause = "; ".join(f"airflow dags unpause {w}" for w in workflows)
        super().__init__(
            f"templates not published on {instance}: its technical workflows {', '.join(workflows)} are "
            f"not started (no heartbeat in the last {max_age_seconds:.0f} s). Start them in the Airflow "
            f"of {instance} (turn the DAGs on: `{unpause}`), then publish again; or publish anyway with "
            "the override (DAG param force=true on publishTemplates, `--force` on `python -m "
            "messagecenter templates publish`)"
        )


def require_started(
    conn: psycopg.Connection[Any],
    *,
    instance: str,
    max_age_seconds: float,
    workflows: Iterable[str] = TECHNICAL_WORKFLOWS,
) -> None:
    """Refuse (:class:`WorkflowsNotStarted`) unless every technical workflow of the instance that
    ``conn`` reaches has a heartbeat younger than ``max_age_seconds``."""
    stale = stale_workflows(read_heartbeats(conn), max_age_seconds, workflows)
    if stale:
        raise WorkflowsNotStarted(instance, stale, max_age_seconds)


class Pulse:
    """While a long pass runs, refresh ``workflow``'s heartbeat every ``every_seconds`` in a thread.

    It uses its own autocommit connection (the pass's transactions stay untouched); any failure is
    logged, never raised: a heartbeat must not stop the work it reports on.
    """

    def __init__(self, connect: Connect, workflow: str, every_seconds: float) -> None:
        self.connect = connect
        self.workflow = workflow
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{workflow}", daemon=True)
        self.beats = 0

    def __enter__(self) -> Pulse:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            with self.connect() as conn:
                conn.autocommit = True
                while True:
                    touch_heartbeat(conn, self.workflow)
                    self.beats += 1
                    if self._stop.wait(self.every_seconds):
                        return
        except Exception as exc:  # reported, never raised
            log.warning("Heartbeat of %s not recorded: %s", self.workflow, exc)
