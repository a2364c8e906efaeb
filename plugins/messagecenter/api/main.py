"""The FastAPI application factory, used by the Airflow plugin and by ``uvicorn messagecenter.api:app``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from psycopg_pool import PoolTimeout

from messagecenter import __version__
from messagecenter.airflow.registry_sync import poll_registry
from messagecenter.api.deps import NOT_CONFIGURED, ApiState, require_token
from messagecenter.api.models import ErrorMessage
from messagecenter.api.routes import archiving, events, feedback, health, quarantine, unsubscribe
from messagecenter.api.server_logs import KeepServerLoggers
from messagecenter.api.soap import soap_router
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import Settings
from messagecenter.intake.decode import request_schema, schema_components

log = logging.getLogger(__name__)

# Answers every route under /api/v1 may give, whatever it does.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "Missing or invalid bearer token"},
    503: {
        "model": ErrorMessage,
        "description": "Execution database unavailable, or service not configured (the detail is in the "
        "server's log)",
    },
}


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(
    settings: Settings | None = None, *, dsn: str | None = None, in_airflow: bool = False
) -> FastAPI:
    """Build the intake API. Nothing connects until the first request.

    :param settings: defaults to the process settings (environment), read at the first request.
    :param dsn: libpq DSN of the execution database, bypassing the Airflow connection.
    :param in_airflow: mounted in the Airflow API server (the plugin): on a control deployment, also
        serve the archiving routes and mirror ``mc_exec_*`` connections into the archiving registry.
    """
    state = ApiState(settings, dsn=dsn)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        poller = None
        if in_airflow and state.settings.runs_control:
            poller = asyncio.create_task(poll_registry(state.settings.archiving.registry_poll_seconds))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            state.close()

    app = FastAPI(
        title="Message Center intake API",
        version=__version__,
        description="Push transactional events into an execution instance and follow their status.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.mc = state
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)], responses=COMMON_RESPONSES)
    api.include_router(events.router)
    api.include_router(health.router)
    api.include_router(quarantine.router)
    if in_airflow:
        api.include_router(archiving.router)
    app.include_router(api)
    # Without a bearer token: a provider's signature, or the signed link, is the credential.
    public = APIRouter(prefix="/api/v1")
    public.include_router(feedback.router)
    public.include_router(unsubscribe.router)
    app.include_router(public)
    if in_airflow:  # the page in the Airflow UI, built (with Airflow's auth) on its first request
        from messagecenter.api.routes.page_mount import include_page

        include_page(app)
    if not in_airflow:  # in Airflow, the plugin serves SOAP at the server's root (create_soap_app)
        app.include_router(soap_router("/nl"))
        # Standalone: uvicorn's access log survives Airflow's logging setup (at its first import).
        app.add_middleware(KeepServerLoggers)

    def openapi() -> dict[str, Any]:
        # The push body's limits are settings: documented as configured, read on first use.
        if app.openapi_schema is None:
            spec = FastAPI.openapi(app)
            push = spec["paths"].get("/api/v1/events/{queue}", {}).get("post")
            if push is not None:
                push["requestBody"]["content"]["application/json"]["schema"] = request_schema(
                    state.settings.intake
                )
                spec.setdefault("components", {}).setdefault("schemas", {}).update(schema_components())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
        log.error("Configuration error: %s", exc)
        return JSONResponse({"detail": NOT_CONFIGURED}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        log.error("Execution database unavailable: %s", exc)
        return JSONResponse(
            {"detail": "execution database unavailable"}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE
        )

    return app


def create_soap_app(
    settings: Settings | None = None, *, dsn: str | None = None, state: ApiState | None = None
) -> FastAPI:
    """Campaign's SOAP interface alone (``/jsp/soaprouter.jsp``, ``/jsp/schemawsdl.jsp``), for the
    plugin to mount at ``/nl`` of the Airflow API server, where Campaign clients call it.

    :param state: share the intake API's settings, connection pool and tokens (its app closes them);
        by default the app has its own, built from ``settings`` and ``dsn`` as :func:`create_app` does.
    """
    owned = state is None
    shared = ApiState(settings, dsn=dsn) if state is None else state

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                shared.close()

    app = FastAPI(
        title="Message Center SOAP interface (Campaign nms:rtEvent / nms:batchEvent)",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.mc = shared
    app.include_router(soap_router())
    return app
