"""When a workflow counts as stopped: it never ran, or its last heartbeat is older than allowed.

The execution workflows write their heartbeats (``messagecenter.execution.heartbeat``); the doctor,
the Message Center page and template publishing judge them here, with the one rule of
:func:`is_stale` (the limit is ``MC_HEARTBEAT_MAX_AGE_SECONDS``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from messagecenter.core.errors import ConfigError
from messagecenter.execution.heartbeat import TECHNICAL_WORKFLOWS, Heartbeat, read_heartbeats


def is_stale(age_seconds: float | None, max_age_seconds: float) -> bool:
    """No heartbeat at all (``None``), or none in the last ``max_age_seconds``."""
    return age_seconds is None or age_seconds > max_age_seconds


def heartbeat_ages(
    heartbeats: Mapping[str, Heartbeat], workflows: Iterable[str] = TECHNICAL_WORKFLOWS
) -> dict[str, float | None]:
    """Each of ``workflows`` -> the age of its heartbeat in seconds (``None``: it never ran)."""
    return {name: heartbeats[name].age_seconds if name in heartbeats else None for name in workflows}


def stale_workflows(
    heartbeats: Mapping[str, Heartbeat],
    max_age_seconds: float,
    workflows: Iterable[str] = TECHNICAL_WORKFLOWS,
) -> list[str]:
    """The ``workflows`` with no heartbeat, or none in the last ``max_age_seconds``."""
    ages = heartbeat_ages(heartbeats, workflows)
    return [name for name, age in ages.items() if is_stale(age, max_age_seconds)]


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
