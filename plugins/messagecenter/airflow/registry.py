"""The execution-instance registry on Airflow's side: Variables, the metadata DB and reparse requests.

The plugin keeps Airflow Variables ``mc_archiving__<instance>`` in step with the ``mc_exec_*``
connections of the metadata DB (it runs in the API server, where the ORM is allowed), and the
explicit "Create the archiving workflow" action writes one for a connection only a secrets backend
knows. DAG files read them with :func:`archiving_instances`, through ``Variable.keys`` and a
last-known-good cache (``messagecenter.control.registry``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from messagecenter.control import registry
from messagecenter.control.registry import (
    NAME_RE,
    archiving_dag_id,
    check_instance_name,
    instance_name,
    workflow,
)
from messagecenter.core.settings import EXEC_CONN_PREFIX

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "mc_archiving__"
ARCHIVING_DAG_FILE = "mc_archiving.py"  # relative to the dags folder (the "dags-folder" bundle)
DAGS_BUNDLE = "dags-folder"
MIRRORED = "Mirrored from connection {conn_id} by the Message Center plugin"
REGISTERED = "Registered with 'Create the archiving workflow' for connection {conn_id}"

__all__ = [
    "archiving_dag_id",
    "archiving_instances",
    "register_instance",
    "registered_instances",
    "sync_registry",
    "unregister_instance",
    "workflow",
]


def archiving_instances(
    *,
    environ: Mapping[str, str] | None = None,
    lookup: Callable[[], Iterable[str]] | None = None,
    cache: Path | None = None,
) -> list[str]:
    """Every execution instance to archive: environment connections plus registered Variables
    (``lookup`` replaces the Variable lookup, e.g. in a test)."""
    return registry.archiving_instances(environ=environ, lookup=lookup or registered_instances, cache=cache)


def registered_instances() -> set[str]:
    """Instances registered as Variables (mirrored connections and the explicit action)."""
    try:
        from airflow.sdk import Variable

        keys = list(Variable.keys(prefix=VARIABLE_PREFIX))  # lazy proxy: errors surface on first use
    except ImportError:
        # No task supervisor (in-process DagBag, `airflow dags test`, the CLI): read the metastore.
        keys = _orm_variable_keys()
    return {key[len(VARIABLE_PREFIX) :] for key in keys if NAME_RE.match(key[len(VARIABLE_PREFIX) :])}


def _orm_variable_keys() -> list[str]:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        query = select(Variable.key).where(Variable.key.startswith(VARIABLE_PREFIX, autoescape=True))
        return list(session.scalars(query))


def sync_registry(session: Any) -> bool:
    """Mirror the metadata DB's ``mc_exec_*`` connections into registry Variables; True if changed.

    Variables of the explicit action are kept while their connection is absent (it may live in a
    secrets backend); mirrored ones go with their connection, and so does the DAG.
    """
    from airflow.models.connection import Connection
    from airflow.models.variable import Variable
    from sqlalchemy import select

    conn_ids = session.scalars(
        select(Connection.conn_id).where(Connection.conn_id.startswith(EXEC_CONN_PREFIX, autoescape=True))
    )
    wanted = {name: conn_id for conn_id in conn_ids if (name := instance_name(conn_id))}
    rows = session.execute(
        select(Variable.key, Variable.description).where(
            Variable.key.startswith(VARIABLE_PREFIX, autoescape=True)
        )
    ).all()
    existing = {key[len(VARIABLE_PREFIX) :]: description or "" for key, description in rows}
    changed = False
    for name, conn_id in wanted.items():
        if name not in existing:
            Variable.set(
                VARIABLE_PREFIX + name, conn_id, description=MIRRORED.format(conn_id=conn_id), session=session
            )
            log.info("Execution instance %s registered from connection %s", name, conn_id)
            changed = True
    for name, description in existing.items():
        if name not in wanted and description.startswith("Mirrored from connection"):
            Variable.delete(VARIABLE_PREFIX + name, session=session)
            log.info(
                "Execution instance %s unregistered: connection %s%s is gone", name, EXEC_CONN_PREFIX, name
            )
            changed = True
    if changed:
        request_reparse(session)
    return changed


def register_instance(session: Any, name: str) -> str:
    """ "Create the archiving workflow" of ``name``: register it and ask for a reparse; return the DAG id."""
    from airflow.models.variable import Variable

    conn_id = EXEC_CONN_PREFIX + check_instance_name(name)
    Variable.set(
        VARIABLE_PREFIX + name, conn_id, description=REGISTERED.format(conn_id=conn_id), session=session
    )
    request_reparse(session)
    return archiving_dag_id(name)


def unregister_instance(session: Any, name: str) -> bool:
    """Remove ``name`` from the registry (its DAG goes once reparsed); False if it was not registered."""
    from airflow.models.variable import Variable

    deleted = Variable.delete(VARIABLE_PREFIX + check_instance_name(name), session=session)
    if deleted:
        request_reparse(session)
    return bool(deleted)


def request_reparse(session: Any) -> None:
    """Ask the dag-processor to parse the archiving DAG file now (about a second, not 30)."""
    from airflow.models.dagbag import DagPriorityParsingRequest
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    pending = session.scalar(
        select(DagPriorityParsingRequest.id).where(
            DagPriorityParsingRequest.bundle_name == DAGS_BUNDLE,
            DagPriorityParsingRequest.relative_fileloc == ARCHIVING_DAG_FILE,
        )
    )
    if pending is not None:
        return
    try:
        with session.begin_nested():  # another API server worker may insert the same request
            session.add(
                DagPriorityParsingRequest(bundle_name=DAGS_BUNDLE, relative_fileloc=ARCHIVING_DAG_FILE)
            )
    except IntegrityError:
        log.debug("A reparse of %s is already requested", ARCHIVING_DAG_FILE)
