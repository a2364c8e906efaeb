"""Whether an instance's technical workflows run: started, waiting to be started, or stopped.

The execution workflows write their heartbeats (``messagecenter.execution.heartbeat``); the doctor,
the Message Center page and template publishing judge them here, with one rule. A workflow with no
heartbeat at all never ran: the instance is *waiting* for it to be started (a fresh or newly
registered instance; a warning, not a failure). A workflow whose last heartbeat is older than
``MC_HEARTBEAT_MAX_AGE_SECONDS`` ran and then stopped: the instance is *stopped* (an error).
Templates are published only on an instance whose technical workflows all run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from messagecenter.core.errors import ConfigError
from messagecenter.execution.heartbeat import TECHNICAL_WORKFLOWS, Heartbeat, read_heartbeats

State = Literal["started", "waiting", "stopped"]


def is_stale(age_seconds: float | None, max_age_seconds: float) -> bool:
    """No heartbeat at all (``None``), or none in the last ``max_age_seconds``."""
    return age_seconds is None or age_seconds > max_age_seconds


def heartbeat_ages(
    heartbeats: Mapping[str, Heartbeat], workflows: Iterable[str] = TECHNICAL_WORKFLOWS
) -> dict[str, float | None]:
    """Each of ``workflows`` -> the age of its heartbeat in seconds (``None``: it never ran)."""
    return {name: heartbeats[name].age_seconds if name in heartbeats else None for name in workflows}


def never_reported(
    heartbeats: Mapping[str, Heartbeat], workflows: Iterable[str] = TECHNICAL_WORKFLOWS
) -> list[str]:
    """The ``workflows`` without any heartbeat: never started on this instance."""
    return [name for name in workflows if name not in heartbeats]


def stale_workflows(
    heartbeats: Mapping[str, Heartbeat],
    max_age_seconds: float,
    workflows: Iterable[str] = TECHNICAL_WORKFLOWS,
) -> list[str]:
    """The ``workflows`` that ran, but not in the last ``max_age_seconds``: they stopped."""
    ages = heartbeat_ages(heartbeats, workflows)
    return [name for name, age in ages.items() if age is not None and is_stale(age, max_age_seconds)]


def start_hint(workflows: Sequence[str], instance: str | None = None) -> str:
    """What to do to start ``workflows``: on ``instance`` (registered on control), or here."""
    if instance is not None:
        return f"turn on {', '.join(workflows)} in the Airflow of instance {instance}"
    unpause = "; ".join(f"airflow dags unpause {w}" for w in workflows)
    return f"turn the DAGs on (`{unpause}`)"


@dataclass(frozen=True)
class WorkflowsState:
    """The technical workflows of one instance, judged by their heartbeats.

    :param waiting: those that never reported a heartbeat (not started yet).
    :param stopped: those that reported, but not in the last ``MC_HEARTBEAT_MAX_AGE_SECONDS``.
    """

    waiting: tuple[str, ...]
    stopped: tuple[str, ...]

    @property
    def state(self) -> State:
        """``stopped`` as soon as one stopped (an error); ``waiting`` while some never ran."""
        if self.stopped:
            return "stopped"
        return "waiting" if self.waiting else "started"

    def waiting_message(self, instance: str | None = None) -> str:
        """Why nothing is published on a waiting instance, and how to start it."""
        return (
            f"{_where(instance)} is waiting: {', '.join(self.waiting)} never reported a heartbeat, so "
            f"no template is published there yet; start its workflows: {start_hint(self.waiting, instance)}. "
            "publishTemplates publishes there at its first run after they report"
        )

    def message(self, instance: str | None = None) -> str:
        """One line for the page: the state, and what to do when it is not ``started``."""
        if self.stopped:
            return (
                f"{_where(instance)} stopped: {', '.join(self.stopped)} ran, then stopped reporting "
                "heartbeats, and templates are not published there; start them again: "
                f"{start_hint(self.stopped, instance)}, and check the scheduler and the workers of the "
                "execution queue"
            )
        if self.waiting:
            return self.waiting_message(instance)
        return f"{_where(instance)} runs: its technical workflows report heartbeats"

    def to_json(self, instance: str | None = None) -> dict[str, Any]:
        return {
            "state": self.state,
            "waiting": list(self.waiting),
            "stopped": list(self.stopped),
            "message": self.message(instance),
        }


def _where(instance: str | None) -> str:
    return f"instance {instance}" if instance is not None else "this instance"


def workflows_state(
    heartbeats: Mapping[str, Heartbeat],
    max_age_seconds: float,
    workflows: Iterable[str] = TECHNICAL_WORKFLOWS,
) -> WorkflowsState:
    """Judge ``workflows`` (default: the technical ones) by ``heartbeats``."""
    wanted = tuple(workflows)
    return WorkflowsState(
        waiting=tuple(never_reported(heartbeats, wanted)),
        stopped=tuple(stale_workflows(heartbeats, max_age_seconds, wanted)),
    )


class WorkflowsNotStarted(ConfigError):
    """Templates are not deployed on an instance whose technical workflows ran, then stopped."""

    def __init__(self, instance: str, workflows: Sequence[str], max_age_seconds: float) -> None:
        self.instance = instance
        self.workflows = list(workflows)
        super().__init__(
            f"templates not published on {instance}: its technical workflows {', '.join(workflows)} "
            f"stopped (no heartbeat in the last {max_age_seconds:.0f} s). Start them again: "
            f"{start_hint(workflows)} in the Airflow of {instance}, and check its scheduler and the "
            "workers of its execution queue; then publish again, or publish anyway with the override "
            "(DAG param force=true on publishTemplates, `--force` on `python -m messagecenter "
            "templates publish`)"
        )


def check_started(
    conn: psycopg.Connection[Any],
    *,
    instance: str,
    max_age_seconds: float,
    workflows: Iterable[str] = TECHNICAL_WORKFLOWS,
) -> WorkflowsState:
    """The state of the technical workflows of the instance ``conn`` reaches.

    :raises WorkflowsNotStarted: some of them stopped (their heartbeats are too old).
    """
    state = workflows_state(read_heartbeats(conn), max_age_seconds, workflows)
    if state.stopped:
        raise WorkflowsNotStarted(instance, state.stopped, max_age_seconds)
    return state
