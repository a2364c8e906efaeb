"""Every DAG file parses, and every DAG follows the house rules (tags, owner, paused state, queue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

EXECUTION_DAGS = {
    "batchEventsProcessing",
    "rtEventsProcessing",
    "updateEventsStatus",
    "bounceProcessing",
    "smsReceipts",
}


def test_dag_files_import_without_errors(dagbag: Callable[[], Any]) -> None:
    bag = dagbag()
    assert bag.import_errors == {}
    assert set(bag.dag_ids) >= EXECUTION_DAGS


def test_every_dag_has_tags_an_owner_and_retries(dagbag: Callable[[], Any]) -> None:
    for dag_id, dag in dagbag().dags.items():
        assert "messagecenter" in dag.tags, dag_id
        assert {"control", "execution"} & set(dag.tags), dag_id
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.owner == "messagecenter", (dag_id, task.task_id)
            assert task.retries >= 1, (dag_id, task.task_id)


def test_execution_dags_start_paused_single_run_on_the_execution_queue(
    dagbag: Callable[[], Any], mc_env: Callable[..., None]
) -> None:
    mc_env(MC_EXECUTION_QUEUE="mc_execution_q")
    bag = dagbag()
    for dag_id in EXECUTION_DAGS:
        dag = bag.dags[dag_id]
        assert dag.is_paused_upon_creation is True, dag_id
        assert dag.max_active_runs == 1, dag_id
        assert "execution" in dag.tags, dag_id
        assert {t.queue for t in dag.tasks} == {"mc_execution_q"}, dag_id


@pytest.mark.parametrize("dag_id", ["rtEventsProcessing", "smsReceipts"])
def test_long_lived_drains_are_continuous(dagbag: Callable[[], Any], dag_id: str) -> None:
    dag = dagbag().dags[dag_id]
    assert type(dag.timetable).__name__ == "ContinuousTimetable"


@pytest.mark.parametrize(("role", "expected"), [("execution", EXECUTION_DAGS), ("control", set())])
def test_role_decides_which_dags_exist(
    dagbag: Callable[[], Any], mc_env: Callable[..., None], role: str, expected: set[str]
) -> None:
    mc_env(MC_ROLE=role)
    bag = dagbag()
    assert bag.import_errors == {}
    assert set(bag.dag_ids) & EXECUTION_DAGS == expected
