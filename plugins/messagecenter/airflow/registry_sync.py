"""Keep the archiving registry in step with the ``mc_exec_*`` connections, from inside the API server.

The API server may use the metadata DB (DAG files may not), so the Message Center plugin runs this:
a poll every ``MC_REGISTRY_POLL_SECONDS`` (catches ``airflow connections add`` and anything written
straight to the DB) and a root middleware that syncs right after a successful write to
``/api/v2/connections`` (the UI and REST API), so the archiving DAG appears within a second or two.
Both were verified on Airflow 3.3.2: a plugin app's lifespan runs in the API server and may use the
ORM there, and a root middleware sees the UI's connection edits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from messagecenter.airflow import registry
from messagecenter.core.settings import get_settings

log = logging.getLogger(__name__)

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def sync_once() -> bool:
    """One sync in its own session; never raises (the loop and the request must go on)."""
    if not get_settings().runs_control:
        return False
    try:
        from airflow.utils.session import create_session

        with create_session(scoped=False) as session:
            return registry.sync_registry(session)
    except Exception:
        log.exception("Could not sync the execution-instance registry; the next poll retries")
        return False


async def poll_registry(interval: float) -> None:
    """Sync forever, off the event loop; cancelled when the API server stops."""
    log.info("Mirroring %s* connections into the archiving registry every %s s", "mc_exec_", interval)
    while True:
        await asyncio.to_thread(sync_once)
        await asyncio.sleep(interval)


class RegistrySyncMiddleware:
    """ASGI middleware: sync after a successful connection write through the REST API or the UI."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in _WRITES
            or "/api/v2/connections" not in scope.get("path", "")
        ):
            await self.app(scope, receive, send)
            return
        status = 0

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, record_status)
        if 200 <= status < 400:
            await asyncio.to_thread(sync_once)
