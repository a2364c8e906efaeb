"""Operator actions, one function each, whatever asks: the CLI, the API, the page or a task.

* :func:`register_instance` / :func:`unregister_instance`: "Create the archiving workflow" of an
  execution instance (``python -m messagecenter archiving create``, ``POST /api/v1/archiving/<name>``,
  the page's button) and its reverse (``archiving remove``);
* :func:`publish_to_instance`: control's latest templates onto one execution instance, only once its
  technical workflows run unless forced (``templates publish``, ``publishTemplates``).
"""

from __future__ import annotations

from messagecenter.airflow import registry
from messagecenter.airflow.hooks import MessageCenterDbHook
from messagecenter.core.settings import get_settings
from messagecenter.monitoring.heartbeats import require_started
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


def publish_to_instance(
    control: MessageCenterDbHook, execution: MessageCenterDbHook, *, instance: str, force: bool = False
) -> dict[str, int]:
    """Publish control's latest template versions on one execution instance; return how many were
    ``created`` and how many were already there (``unchanged``).

    :param instance: the instance's name in the refusal.
    :param force: publish even if its technical workflows have no recent heartbeat.
    :raises WorkflowsNotStarted: they have none (and not ``force``); nothing is published.
    """
    with control.connect() as control_conn, execution.connect() as exec_conn:
        if not force:
            require_started(
                exec_conn, instance=instance, max_age_seconds=get_settings().monitoring.heartbeat_max_age
            )
        published = publish_latest(control_conn, exec_conn)
    created = sum(p.created for p in published)
    return {"created": created, "unchanged": len(published) - created}
