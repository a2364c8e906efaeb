"""Operator actions, one function each, whatever asks: the CLI, the API, the page or a task.

* :func:`register_instance` / :func:`unregister_instance`: "Create the archiving workflow" of an
  execution instance (``python -m messagecenter archiving create``, ``POST /api/v1/archiving/<name>``,
  the page's button) and its reverse (``archiving remove``);
* :func:`publish_to_instance`: control's latest templates onto one execution instance, only once its
  technical workflows run unless forced (``templates publish``, ``publishTemplates``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messagecenter.airflow import registry
from messagecenter.airflow.hooks import MessageCenterDbHook
from messagecenter.core.settings import get_settings
from messagecenter.monitoring.heartbeats import WorkflowsState, check_started
from messagecenter.templates.publishing import publish_latest


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
    """Remove ``instance`` from the registry (its DAG goes at the next parse); False if it was not
    registered."""
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
