"""End to end with Airflow: events pushed through the API, delivered by the real DAGs (``dag.test()``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from messagecenter.api import create_app
from messagecenter.core.settings import Settings
from messagecenter.templates.files import load_template_file
from messagecenter.templates.publishing import publish_templates
from tests.support.builders import REPO, airflow_uri

pytestmark = pytest.mark.airflow


@pytest.fixture
def execution_env(
    db_dsn: str, conn: psycopg.Connection, airflow_db: Path, mc_env: Callable[..., None], smtp_sink: Any
) -> Any:
    mc_env(AIRFLOW_CONN_MC_EXECUTION=airflow_uri(db_dsn), MC_RETRY_BACKOFF_SECONDS=0)
    publish_templates(conn, load_template_file(REPO / "include" / "templates" / "example.yaml"))
    return smtp_sink


def push(db_dsn: str, queue: str, events: list[dict[str, Any]]) -> list[int]:
    app = create_app(Settings(api_tokens=("t",)), dsn=db_dsn)
    with TestClient(app, headers={"Authorization": "Bearer t"}) as client:
        response = client.post(f"/api/v1/events/{queue}", json={"events": events})
    assert response.status_code == 201, response.text
    return response.json()["ids"]


def run(dagbag: Callable[[], Any], dag_id: str) -> None:
    run = dagbag().dags[dag_id].test()
    assert run.state == "success", f"{dag_id} ended {run.state}"


def statuses(conn: psycopg.Connection, queue: str) -> list[int]:
    return [r[0] for r in conn.execute(f"SELECT status FROM mc.{queue}_event ORDER BY id").fetchall()]


ORDERS = [
    {
        "type": "ORDER_CONFIRMATION",
        "email": f"buyer{n}@example.com",
        "ctx": {"firstName": f"B{n}", "orderId": n},
    }
    for n in range(5)
]


def test_batch_events_are_sent_by_batch_processing_then_status_update(
    execution_env: Any, db_dsn: str, conn: psycopg.Connection, dagbag: Callable[[], Any]
) -> None:
    ids = push(db_dsn, "batch", [*ORDERS, {"type": "NOT_A_TEMPLATE", "email": "x@example.com"}])
    run(dagbag, "batchEventsProcessing")
    assert statuses(conn, "batch") == [1] * 5 + [5]  # delivered, status not copied yet
    run(dagbag, "updateEventsStatus")
    assert statuses(conn, "batch") == [2] * 5 + [5]
    received = execution_env.recorder.received
    assert sorted(execution_env.recorder.event_ids()) == ids[:5]
    assert {r.mail["To"] for r in received} == {f"buyer{n}@example.com" for n in range(5)}
    assert all(r.mail["Subject"].startswith("Order ") for r in received)


def test_rt_events_are_drained_by_the_continuous_dag(
    execution_env: Any,
    db_dsn: str,
    conn: psycopg.Connection,
    dagbag: Callable[[], Any],
    mc_env: Callable[..., None],
) -> None:
    mc_env(MC_RT_DRAIN_SECONDS=2)
    ids = push(db_dsn, "rt", ORDERS[:3])
    run(dagbag, "rtEventsProcessing")
    run(dagbag, "updateEventsStatus")
    assert statuses(conn, "rt") == [2, 2, 2]
    assert sorted(execution_env.recorder.event_ids()) == ids
