from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from messagecenter.core.settings import get_settings
from tests.conftest import REPO


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
