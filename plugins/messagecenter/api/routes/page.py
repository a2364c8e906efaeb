"""The "Message Center" page inside the Airflow UI, and its data routes (``/messagecenter/ui``).

Only mounted in the Airflow API server (the plugin): the data routes check the caller with Airflow's
own auth dependencies (the UI's ``_token`` cookie or a Bearer token), never the intake API's tokens,
which must not reach a browser. Reading needs the plugins view; "Create the archiving workflow"
needs the right to create connections, and, as a cookie is sent with a cross-site form post on the
same host (SameSite=Lax ignores the port), it only accepts a JSON body.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import (
    GetUserDep,
    requires_access_connection,
    requires_access_view,
)
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from messagecenter.airflow import actions, readers
from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import get_settings

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(tags=["page"], include_in_schema=False)


class CreateArchiving(BaseModel):
    """The button's body: the instance again, so an empty or form-encoded post is refused."""

    instance: str


def _can_edit_connections(user: Any) -> bool:
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_connection(method="POST", user=user))


@router.get("/")
async def page() -> FileResponse:
    """The page (no data in it: the data routes check the caller)."""
    return FileResponse(STATIC / "page.html", media_type="text/html")


@router.get("/api/overview", dependencies=[Depends(requires_access_view(AccessView.PLUGINS))])
async def overview(user: GetUserDep) -> dict[str, Any]:
    data = await asyncio.to_thread(readers.overview, get_settings())
    data["can_create_archiving"] = _can_edit_connections(user)
    return data


@router.post(
    "/api/archiving/{instance}",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(requires_access_connection("POST"))],
)
async def create_archiving(instance: str, body: CreateArchiving, request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send a JSON body")
    if body.instance != instance:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body names another instance")
    try:
        return await asyncio.to_thread(actions.register_instance, instance)
    except ConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def create_page_app() -> FastAPI:
    """The page, its data routes and its static files (vendored uPlot), mounted at ``/ui``."""
    app = FastAPI(title="Message Center page", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="messagecenter-static")
    return app
