"""What every Message Center DAG shares: tags, owner, start date, the execution worker queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from messagecenter.config import get_settings

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = "messagecenter"


def execution_default_args() -> dict[str, Any]:
    """Task defaults of execution DAGs: retried, and routed to the execution Celery queue."""
    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "queue": get_settings().execution_queue,
    }


def runs_execution() -> bool:
    """Whether this deployment defines the execution DAGs (``MC_ROLE`` execution or all)."""
    return get_settings().runs_execution


def runs_control() -> bool:
    """Whether this deployment defines the control DAGs (``MC_ROLE`` control or all)."""
    return get_settings().runs_control
