"""``/api/v1/health``: ACC's mcPing, the instance is up and this much work waits."""

from __future__ import annotations

from fastapi import APIRouter

from messagecenter.api.deps import ConnDep, StateDep
from messagecenter.api.models import Health
from messagecenter.db import schema
from messagecenter.intake import store

router = APIRouter(tags=["health"])


@router.get("/health", summary="Pending counts per queue (ACC's mcPing)")
def read_health(state: StateDep, conn: ConnDep) -> Health:
    return Health(
        status="ok",
        instance_id=state.settings.instance_id,
        pending=store.pending_counts(conn),
        schema_version=schema.current_version(conn, "execution"),
    )
