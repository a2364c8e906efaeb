from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from messagecenter.core.settings import get_settings
from messagecenter.execution.heartbeat import TECHNICAL_WORKFLOWS, record_heartbeat
from tests.support.builders import REPO, airflow_uri


@pytest.fixture
def mc_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set Message Center environment variables for DAG code (settings are re-read)."""

    def set_env(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield set_env
    get_settings.cache_clear()


@pytest.fixture
def dagbag() -> Callable[[], Any]:
    """Parse the repository's dags/ folder in process, as the dag-processor would."""
    from airflow.dag_processing.dagbag import DagBag

    def parse() -> Any:
        get_settings.cache_clear()
        return DagBag(dag_folder=str(REPO / "dags"))

    return parse


def exec_conn_uri(dsn: str, instance_id: int) -> str:
    return f"{airflow_uri(dsn)}?instance_id={instance_id}"


@pytest.fixture
def control_env(
    make_db: Any, airflow_db: Path, mc_env: Callable[..., None], tmp_path: Path
) -> dict[str, str]:
    """A control database and two execution instances (paris, tokyo) as Airflow connections."""
    dsns = {"control": make_db(), "paris": make_db(), "tokyo": make_db()}
    mc_env(
        MC_REGISTRY_CACHE=str(tmp_path / "registry.json"),
        AIRFLOW_CONN_MC_CONTROL=airflow_uri(dsns["control"]),
        AIRFLOW_CONN_MC_EXEC_PARIS=exec_conn_uri(dsns["paris"], 1),
        AIRFLOW_CONN_MC_EXEC_TOKYO=exec_conn_uri(dsns["tokyo"], 2),
    )
    for name in ("paris", "tokyo"):  # their technical workflows run: publishTemplates may deploy there
        with psycopg.connect(dsns[name]) as conn:
            for workflow in TECHNICAL_WORKFLOWS:
                record_heartbeat(conn, workflow, 0, 0.0)
    return dsns
