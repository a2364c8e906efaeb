"""Which execution instances the control instance archives: one ``mc_exec_<instance>`` connection each.

Registering an execution instance is adding its connection. Airflow 3 DAG files may not list
connections from the metadata DB, so the archiving DAG file reads two things it can see at parse
time:

* connections defined in the environment (``AIRFLOW_CONN_MC_EXEC_*``), by scanning ``os.environ``;
* Airflow Variables ``mc_archiving__<instance>``, which the Message Center plugin keeps in step with
  the ``mc_exec_*`` connections of the metadata DB (it runs in the API server, where the ORM is
  allowed), and which the explicit "Create the archiving workflow" action writes for a connection
  that only a secrets backend knows.

A failed Variable lookup never yields an empty list nor raises while a previous list is known: the
last known good list is kept in a local cache file, because Airflow deactivates the DAGs of a file
that raises or stops defining them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import EXEC_CONN_PREFIX

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_ENV_PREFIX = "AIRFLOW_CONN_" + EXEC_CONN_PREFIX.upper()


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
    """What the "Create the archiving workflow" action reports for ``instance`` (CLI and API)."""
    return {
        "instance": instance,
        "connection": EXEC_CONN_PREFIX + instance,
        "dag_id": archiving_dag_id(instance),
    }


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
    lookup: Callable[[], Iterable[str]],
    cache: Path | None = None,
) -> list[str]:
    """Every execution instance to archive, sorted: environment connections plus registered ones.

    :param lookup: reads the registered instances (``messagecenter.airflow.registry`` reads the
        Airflow Variables); when it fails, the last list it returned on this machine is used.

    :raises ConfigError: the registry cannot be read and no list was ever read on this machine.
    """
    cache = cache or cache_path()
    try:
        registered = set(lookup())
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
