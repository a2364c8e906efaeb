"""Control DAGs: one archiving DAG per registered execution instance, publishing and cleanup wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from messagecenter.airflow import registry

pytestmark = pytest.mark.airflow


def archiving_dag_ids(bag: Any) -> set[str]:
    return {dag_id for dag_id in bag.dag_ids if dag_id.startswith("mcArchiving_")}


def airflow(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    ).stdout


def sync() -> bool:
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        return registry.sync_registry(session)


@pytest.fixture
def registry_env(airflow_db: Path, mc_env: Callable[..., None], tmp_path: Path) -> Callable[..., None]:
    mc_env(MC_REGISTRY_CACHE=str(tmp_path / "registry.json"))
    yield mc_env
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:  # leave no registered instance to later tests
        for key in registry._orm_variable_keys():
            Variable.delete(key, session=session)
    for conn_id in ("mc_exec_gamma",):
        subprocess.run(
            [sys.executable, "-m", "airflow", "connections", "delete", conn_id], capture_output=True
        )


def test_each_env_connection_yields_an_unpaused_hourly_archiving_dag(
    registry_env: Callable[..., None], dagbag: Callable[[], Any]
) -> None:
    registry_env(
        AIRFLOW_CONN_MC_EXEC_PARIS='{"conn_type": "postgres", "host": "db1", "extra": {"instance_id": 1}}',
        AIRFLOW_CONN_MC_EXEC_TOKYO='{"conn_type": "postgres", "host": "db2", "extra": {"instance_id": 2}}',
    )
    bag = dagbag()
    assert bag.import_errors == {}
    assert archiving_dag_ids(bag) == {"mcArchiving_paris", "mcArchiving_tokyo"}
    for dag_id in ("mcArchiving_paris", "mcArchiving_tokyo"):
        dag = bag.dags[dag_id]
        assert dag.is_paused_upon_creation is False
        assert dag.max_active_runs == 1
        assert "control" in dag.tags
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
        assert dag.timetable.summary == "0 * * * *"
        assert [t.task_id for t in dag.tasks] == ["archive_events"]
    assert bag.dags["mcArchiving_tokyo"].tasks[0].instance == "tokyo"


def test_a_connection_added_with_the_airflow_cli_yields_its_dag_and_removal_drops_it(
    registry_env: Callable[..., None], dagbag: Callable[[], Any]
) -> None:
    registry_env(AIRFLOW_CONN_MC_EXEC_PARIS='{"conn_type": "postgres", "extra": {"instance_id": 1}}')
    airflow(
        "connections", "add", "mc_exec_gamma", "--conn-uri", "postgresql://u@gamma-db:5432/mc?instance_id=3"
    )
    assert sync() is True  # what the plugin's loop does in the API server
    assert sync() is False  # idempotent
    assert archiving_dag_ids(dagbag()) == {"mcArchiving_paris", "mcArchiving_gamma"}
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:  # the dag-processor is asked to reparse at once
        files = {r.relative_fileloc for r in session.query(DagPriorityParsingRequest)}
    assert registry.ARCHIVING_DAG_FILE in files

    airflow("dags", "reserialize")  # as the dag-processor stores it
    assert dag_is_stale("mcArchiving_gamma") is False
    airflow("connections", "delete", "mc_exec_gamma")
    assert sync() is True
    assert archiving_dag_ids(dagbag()) == {"mcArchiving_paris"}
    # Gone from Airflow at once, not once the dag-processor's stale check comes round (117 s measured).
    assert dag_is_stale("mcArchiving_gamma") is True
    assert dag_is_stale("mcArchiving_paris") is False  # its connection is in the environment


def dag_is_stale(dag_id: str) -> bool | None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        return session.scalar(select(DagModel.is_stale).where(DagModel.dag_id == dag_id))


def test_a_failed_registry_lookup_keeps_the_last_known_dags(
    registry_env: Callable[..., None], tmp_path: Path
) -> None:
    cache = tmp_path / "registry.json"
    assert registry.archiving_instances(environ={}, lookup=lambda: {"alpha", "beta"}, cache=cache) == [
        "alpha",
        "beta",
    ]

    def broken() -> set[str]:
        raise RuntimeError("metadata DB unreachable")

    assert registry.archiving_instances(environ={}, lookup=broken, cache=cache) == ["alpha", "beta"]
    assert json.loads(cache.read_text()) == {"instances": ["alpha", "beta"]}
    with pytest.raises(Exception, match="no last known list"):
        registry.archiving_instances(environ={}, lookup=broken, cache=tmp_path / "never-written.json")


def test_the_explicit_action_registers_an_instance_without_a_connection(
    registry_env: Callable[..., None], dagbag: Callable[[], Any]
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "messagecenter", "archiving", "create", "vault"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": "plugins"},
    ).stdout
    assert "mcArchiving_vault" in out
    assert sync() is False  # a registration of the action is not a mirrored connection: kept
    assert "mcArchiving_vault" in archiving_dag_ids(dagbag())


def test_publish_and_cleanup_dags(dagbag: Callable[[], Any]) -> None:
    bag = dagbag()
    publish = bag.dags["publishTemplates"]
    assert "control" in publish.tags
    assert type(publish.timetable).__name__ == "AssetOrTimeSchedule"
    assert {t.task_id for t in publish.tasks} == {
        "list_execution_instances",
        "publish_templates",
        "sync_quarantine",
    }
    cleanup = bag.dags["mcCleanup"]
    assert "execution" in cleanup.tags
    assert cleanup.is_paused_upon_creation is True
