"""Workflow heartbeats: each execution workflow records on its own database when it last ran.

``mc.workflow_heartbeat`` holds one row per workflow (its DAG id): when it last finished a pass,
how many rows that pass handled and how long it took. The real-time drain, which runs for minutes,
also refreshes its row while it runs (:class:`Pulse`), so a live drain never looks stopped. The
doctor, the Message Center page and ``publishTemplates`` read them, and judge them with
``messagecenter.monitoring.heartbeats``: templates are deployed only on an instance whose technical
workflows are started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import psycopg

from messagecenter.db.queries import query

log = logging.getLogger(__name__)

RT_WORKFLOW = "rtEventsProcessing"
BATCH_WORKFLOW = "batchEventsProcessing"
STATUS_WORKFLOW = "updateEventsStatus"
CLEANUP_WORKFLOW = "mcCleanup"
BOUNCE_WORKFLOW = "bounceProcessing"
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
