"""Mount the Message Center page at ``/ui`` of the plugin's app, built on its first request.

The plugin module (and so the app) is imported by every Airflow process that loads plugins:
scheduler, DAG processor, workers. Only the API server serves requests, so only there are the
page's routes built and Airflow's API-server auth (``core_api.security``) imported.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class LazyPage:
    """An ASGI app that builds the page's FastAPI app the first time it is called."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    def _build(self) -> ASGIApp:
        with self._lock:
            if self._app is None:
                from messagecenter.api.routes.page import create_page_app

                self._app = create_page_app()
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or self._build()
        await app(scope, receive, send)


def include_page(app: FastAPI) -> Any:
    """Mount the page at ``/ui`` of ``app``."""
    page = LazyPage()
    app.mount("/ui", page, name="messagecenter-page")
    return page
