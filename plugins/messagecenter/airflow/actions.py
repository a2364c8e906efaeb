"""Operator actions, one function each, whatever asks: the CLI, the API, the page or a task.

* :func:`register_instance` / :func:`unregister_instance`: "Create the archiving workflow" of an
  execution instance (``python -m messagecenter archiving create``, ``POST /api/v1/archiving/<name>``,
  the page's button) and its reverse (``archiving remove``);
* :func:`publish_to_instance`: control's latest templates onto one execution instance, only once its
  technical workflows run unless forced (``templates publish``, ``publishTemplates``);
* :func:`backfill_archiving`: re-archive a period of one instance (``archiving backfill``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from messagecenter.airflow import registry
from messagecenter.airflow.hooks import MessageCenterDbHook
from messagecenter.core.errors import MessageCenterError
from messagecenter.core.settings import get_settings
from messagecenter.monitoring.heartbeats import WorkflowsState, check_started
from messagecenter.templates.publishing import publish_latest

log = logging.getLogger(__name__)


def register_instance(instance: str) -> dict[str, str]:
    """Register execution instance ``instance`` for archiving and ask for a reparse, so its DAG
    appears within seconds; return what was created (instance, connection, DAG id).

    :raises ConfigError: ``instance`` cannot name an instance.
    """
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        registry.add_instance(session, instance)
    return registry.workflow(instance)


def unregister_instance(instance: str) -> bool:
    """Remove ``instance`` from the registry, and its DAG with it; False if it was not registered."""
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        return registry.remove_instance(session, instance)


@dataclass(frozen=True)
class Publication:
    """What :func:`publish_to_instance` did on one instance.

    :param created: template versions new there.
    :param unchanged: versions it already had.
    :param waiting: set when nothing was published because the instance waits for its workflows to
        start (they never reported a heartbeat): its state, whose message says what to do.
    """

    created: int = 0
    unchanged: int = 0
    waiting: WorkflowsState | None = None

    def to_json(self) -> dict[str, Any]:
        """A small dict for XCom and the CLI."""
        return {
            "created": self.created,
            "unchanged": self.unchanged,
            "waiting_for": list(self.waiting.waiting) if self.waiting else [],
        }


def publish_to_instance(
    control: MessageCenterDbHook, execution: MessageCenterDbHook, *, instance: str, force: bool = False
) -> Publication:
    """Publish control's latest template versions on one execution instance; say how many were
    ``created`` and how many were already there (``unchanged``).

    An instance whose technical workflows never reported a heartbeat is waiting to be started, not
    failing: nothing is published and the result says it waits (the next run publishes once they
    report). One whose workflows ran and then stopped is refused.

    :param instance: the instance's name in the messages (its name on control, or a connection id).
    :param force: publish whatever its technical workflows' heartbeats say.
    :raises WorkflowsNotStarted: some of them stopped (and not ``force``); nothing is published.
    """
    with control.connect() as control_conn, execution.connect() as exec_conn:
        if not force:
            state = check_started(
                exec_conn, instance=instance, max_age_seconds=get_settings().monitoring.heartbeat_max_age
            )
            if state.waiting:
                return Publication(waiting=state)
        published = publish_latest(control_conn, exec_conn)
    created = sum(p.created for p in published)
    return Publication(created=created, unchanged=len(published) - created)


class BackfillRunning(MessageCenterError):
    """A backfill of the archiving DAG is still running: Airflow runs one per DAG at a time."""

    def __init__(self, dag_id: str, backfill_id: int, unfinished: int, waited: float) -> None:
        super().__init__(
            f"backfill {backfill_id} of {dag_id} is still running after {waited:.0f} s of waiting "
            f"({unfinished} run(s) not finished; Airflow runs one backfill per DAG at a time). Wait "
            f"for it (rerun this command, or give --timeout more seconds), or cancel it: "
            f"PUT /api/v2/backfills/{backfill_id}/cancel"
        )
        self.backfill_id = backfill_id


def backfill_archiving(
    instance: str,
    from_date: str,
    to_date: str,
    *,
    wait: bool = True,
    timeout: float = 600,
    poll: float = 2,
) -> dict[str, Any]:
    """Re-archive ``[from_date, to_date]`` of ``instance``: a backfill of its archiving DAG that
    reruns every hour of the range, the successful ones too (``--reprocess-behavior completed``).

    ``airflow backfill create`` refuses a second backfill of a DAG while one is running (with a
    traceback, and the scheduler marks a backfill complete up to 30 s after its last run ends), so
    this first waits up to ``timeout`` for the running one; then, with ``wait``, for its own runs.
    Returns the DAG id, the backfill id and its runs per state.

    :raises BackfillRunning: the running backfill did not end within ``timeout``.
    :raises MessageCenterError: ``airflow backfill create`` refused the range (its message).
    """
    dag_id = registry.archiving_dag_id(registry.check_instance_name(instance))
    started = time.monotonic()
    while (active := _active_backfill(dag_id)) is not None:
        backfill_id, unfinished = active
        if time.monotonic() - started >= timeout:
            raise BackfillRunning(dag_id, backfill_id, unfinished, time.monotonic() - started)
        log.info(
            "Waiting for backfill %d of %s to end (%d run(s) not finished): one backfill per DAG at a time",
            backfill_id,
            dag_id,
            unfinished,
        )
        time.sleep(poll)
    before = _last_backfill_id(dag_id)
    command = [
        *(sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", dag_id),
        *("--from-date", from_date, "--to-date", to_date, "--reprocess-behavior", "completed"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    created = _last_backfill_id(dag_id)
    if done.returncode != 0 or created is None or created == before:
        lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        active = _active_backfill(dag_id)
        if any("Another backfill is running" in line for line in lines) and active is not None:
            raise BackfillRunning(dag_id, *active, time.monotonic() - started)  # someone else's, meanwhile
        raise MessageCenterError(
            f"airflow backfill create refused to backfill {dag_id} from {from_date} to {to_date} "
            f"(exit code {done.returncode}): {lines[-1] if lines else 'no output'}"
        )
    log.info("Backfill %d of %s created, %s to %s", created, dag_id, from_date, to_date)
    states = _backfill_run_states(created)
    while wait and any(state in ("queued", "running") for state in states):
        if time.monotonic() - started >= timeout:
            break
        time.sleep(poll)
        states = _backfill_run_states(created)
    return {"dag_id": dag_id, "backfill_id": created, "runs": dict(sorted(Counter(states).items()))}


def _active_backfill(dag_id: str) -> tuple[int, int] | None:
    """The id of the backfill of ``dag_id`` Airflow still counts as running, and its unfinished runs."""
    from airflow.models.backfill import Backfill
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        backfill_id = session.scalar(
            select(Backfill.id)
            .where(Backfill.dag_id == dag_id, Backfill.completed_at.is_(None))
            .order_by(Backfill.id.desc())
            .limit(1)
        )
    if backfill_id is None:
        return None
    states = _backfill_run_states(backfill_id)
    return backfill_id, sum(state in ("queued", "running") for state in states)


def _last_backfill_id(dag_id: str) -> int | None:
    from airflow.models.backfill import Backfill
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session(scoped=False) as session:
        return session.scalar(select(func.max(Backfill.id)).where(Backfill.dag_id == dag_id))


def _backfill_run_states(backfill_id: int) -> list[str]:
    """The state of each DAG run of backfill ``backfill_id``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        states = session.scalars(select(DagRun.state).where(DagRun.backfill_id == backfill_id))
        return [str(getattr(state, "value", state)) for state in states]
