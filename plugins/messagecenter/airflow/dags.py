"""What every Message Center DAG shares: tags, owner, start date, the execution worker queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset

from messagecenter.core.settings import get_settings

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = "messagecenter"
# Updated when control's master templates change: publishTemplates runs at once.
TEMPLATES_ASSET = Asset("messagecenter_templates", uri="messagecenter://control/templates")


def execution_default_args() -> dict[str, Any]:
    """Task defaults of execution DAGs: retried, and routed to the execution Celery queue."""
    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "queue": get_settings().execution_queue,
    }


def _dag_args(
    dag_id: str,
    display_name: str,
    *,
    role: str,
    paused: bool,
    schedule: Any,
    doc_md: str | None,
    run_timeout: timedelta,
    default_args: dict[str, Any],
) -> dict[str, Any]:
    return {
        "dag_id": dag_id,
        "dag_display_name": display_name,
        "schedule": schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "is_paused_upon_creation": paused,
        "dagrun_timeout": run_timeout,
        "default_args": default_args,
        "tags": ["messagecenter", role],
        "doc_md": doc_md,
    }


def execution_dag_args(
    dag_id: str, display_name: str, *, schedule: str, doc_md: str | None, run_timeout: timedelta
) -> dict[str, Any]:
    """Arguments every execution DAG shares: paused at creation (an operator starts the workflow by
    turning it on), one run at a time, no catch-up, tagged ``messagecenter`` and ``execution``."""
    return _dag_args(
        dag_id,
        display_name,
        role="execution",
        paused=True,
        schedule=schedule,
        doc_md=doc_md,
        run_timeout=run_timeout,
        default_args=execution_default_args(),
    )


def control_dag_args(
    dag_id: str, display_name: str, *, schedule: Any, doc_md: str | None, run_timeout: timedelta
) -> dict[str, Any]:
    """Arguments every control DAG shares: running as soon as created (as in the seed: archiving
    starts by itself once an instance is registered), one run at a time, tagged ``control``."""
    return _dag_args(
        dag_id,
        display_name,
        role="control",
        paused=False,
        schedule=schedule,
        doc_md=doc_md,
        run_timeout=run_timeout,
        default_args={"owner": OWNER, "retries": 3, "retry_delay": timedelta(minutes=1)},
    )


def runs_execution() -> bool:
    """Whether this deployment defines the execution DAGs (``MC_ROLE`` execution or all)."""
    return get_settings().runs_execution


def runs_control() -> bool:
    """Whether this deployment defines the control DAGs (``MC_ROLE`` control or all)."""
    return get_settings().runs_control
