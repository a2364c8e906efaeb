"""Which execution instances the control instance archives: one ``mc_exec_<instance>`` connection each.

Registering an execution instance is adding its connection. Airflow 3 DAG files may not list
connections from the metadata DB, so the archiving DAG file (:func:`archiving_instances`) reads two
things it can see at parse time:

* connections defined in the environment (``AIRFLOW_CONN_MC_EXEC_*``), by scanning ``os.environ``;
* Airflow Variables ``mc_archiving__<instance>``, which the Message Center plugin keeps in step with
  the ``mc_exec_*`` connections of the metadata DB (:func:`sync_registry`: it runs in the API
  server, where the ORM is allowed), and which the explicit "Create the archiving workflow" action
  (``messagecenter.airflow.actions.register_instance``) writes for a connection that only a secrets
  backend knows.

A failed Variable lookup never yields an empty list nor raises while a previous list is known: the
last known good list is kept in a local cache file, because Airflow deactivates the DAGs of a file
that raises or stops defining them. The naming conventions (connection ``mc_exec_<instance>``, DAG
``mcArchiving_<instance>``) are here too, so a DAG file needs nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import EXEC_CONN_PREFIX

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_ENV_PREFIX = "AIRFLOW_CONN_" + EXEC_CONN_PREFIX.upper()
VARIABLE_PREFIX = "mc_archiving__"
ARCHIVING_DAG_FILE = "mc_archiving.py"  # relative to the dags folder (the "dags-folder" bundle)
DAGS_BUNDLE = "dags-folder"
MIRRORED = "Mirrored from connection {conn_id} by the Message Center plugin"
REGISTERED = "Registered with 'Create the archiving workflow' for connection {conn_id}"


# --- Naming conventions ------------------------------------------------------------------------------


def instance_name(conn_id: str) -> str | None:
    """``paris`` for ``mc_exec_paris``; ``None`` for a connection that is not an execution instance."""
    if not conn_id.startswith(EXEC_CONN_PREFIX):
        return None
    name = conn_id[len(EXEC_CONN_PREFIX) :]
    return name if NAME_RE.match(name) else None


def check_instance_name(name: str) -> str:
    """``name`` if it can name an instance (a DAG id suffix), else :class:`ConfigError`."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"invalid execution instance name {name!r}: use lower-case letters, digits and _ "
            f"(the connection is {EXEC_CONN_PREFIX}<name>)"
        )
    return name


def archiving_dag_id(instance: str) -> str:
    return f"mcArchiving_{instance}"


def workflow(instance: str) -> dict[str, str]:
    """What the "Create the archiving workflow" action reports for ``instance`` (CLI, API and page)."""
    return {
        "instance": instance,
        "connection": EXEC_CONN_PREFIX + instance,
        "dag_id": archiving_dag_id(instance),
    }


# --- What a DAG file may read: the environment, Variables, the last known good list -----------------


def env_instances(environ: Mapping[str, str] | None = None) -> set[str]:
    """Instances whose connection is an ``AIRFLOW_CONN_MC_EXEC_*`` environment variable."""
    environ = os.environ if environ is None else environ
    names = (
        instance_name(key[len("AIRFLOW_CONN_") :].lower()) for key in environ if key.startswith(_ENV_PREFIX)
    )
    return {name for name in names if name}


def cache_path() -> Path:
    """Last known good list, on the local disk of each dag-processor and worker (``MC_REGISTRY_CACHE``)."""
    configured = os.environ.get("MC_REGISTRY_CACHE")
    if configured:
        return Path(configured)
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return home / "messagecenter" / "archiving_instances.json"


def archiving_instances(
    *,
    environ: Mapping[str, str] | None = None,
    lookup: Callable[[], Iterable[str]] | None = None,
    cache: Path | None = None,
) -> list[str]:
    """Every execution instance to archive, sorted: environment connections plus registered ones.

    :param lookup: reads the registered instances (default :func:`registered_instances`, the
        Variables; a test passes its own); when it fails, the last list it returned on this machine
        is used.

    :raises ConfigError: the registry cannot be read and no list was ever read on this machine.
    """
    cache = cache or cache_path()
    try:
        registered = set((lookup or registered_instances)())
    except Exception as exc:  # any backend or driver error: keep the DAGs we had
        try:
            registered = set(json.loads(cache.read_text())["instances"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                f"cannot read the execution-instance registry ({exc}) and no last known list at {cache}"
            ) from exc
        log.warning("Execution-instance registry unreadable (%s); using the last known list %s", exc, cache)
    else:
        _write_cache(cache, registered)
    return sorted(env_instances(environ) | registered)


def _write_cache(cache: Path, instances: set[str]) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"instances": sorted(instances)}))
        tmp.replace(cache)  # atomic: a concurrent parse never reads half a file
    except OSError as exc:
        log.warning("Cannot write the registry cache %s: %s", cache, exc)


# --- The registry on Airflow's side: Variables, the metadata DB, reparse requests ------------------


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
    secrets backend); mirrored ones go with their connection, and so does the DAG, at once
    (:func:`deactivate_dag`).
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
            deactivate_dag(session, name)
            log.info(
                "Execution instance %s unregistered: connection %s%s is gone", name, EXEC_CONN_PREFIX, name
            )
            changed = True
    if changed:
        request_reparse(session)
    return changed


def add_instance(session: Any, name: str) -> str:
    """Register ``name`` in ``session`` and ask for a reparse; return its archiving DAG id (the
    operator action is ``messagecenter.airflow.actions.register_instance``)."""
    from airflow.models.variable import Variable

    conn_id = EXEC_CONN_PREFIX + check_instance_name(name)
    Variable.set(
        VARIABLE_PREFIX + name, conn_id, description=REGISTERED.format(conn_id=conn_id), session=session
    )
    request_reparse(session)
    return archiving_dag_id(name)


def remove_instance(session: Any, name: str) -> bool:
    """Remove ``name`` from the registry, and its DAG at once; False if it was not registered."""
    from airflow.models.variable import Variable

    deleted = Variable.delete(VARIABLE_PREFIX + check_instance_name(name), session=session)
    if deleted:
        deactivate_dag(session, name)
        request_reparse(session)
    return bool(deleted)


def deactivate_dag(session: Any, name: str) -> None:
    """Mark the archiving DAG of ``name`` stale now, as the dag-processor does for a DAG its file no
    longer defines, but only once the file was parsed again more than ``stale_dag_threshold`` (50 s)
    after the DAG's last parse, checked every ``parsing_cleanup_interval`` (60 s): measured on the
    demo, a deleted connection's DAG stayed 117 s. Left alone while a connection in this process's
    environment still defines it; and if the DAG file still defines it elsewhere, the reparse
    requested with it makes it active again."""
    from airflow.models.dag import DagModel
    from sqlalchemy import update

    if name in env_instances():
        return
    session.execute(
        update(DagModel)
        .where(DagModel.dag_id == archiving_dag_id(name), DagModel.is_stale.is_(False))
        .values(is_stale=True)
        .execution_options(synchronize_session=False)
    )


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
