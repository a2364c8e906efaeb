"""``/api/v1/archiving``: the seed's "Create the archiving workflow" action, for the UI (control).

Only mounted inside the Airflow API server (the plugin), where the metadata DB may be used.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, status

from messagecenter.airflow import actions, registry
from messagecenter.api.models import ArchivingWorkflow, ValidationErrorsOrMessage
from messagecenter.core.errors import ConfigError

router = APIRouter(prefix="/archiving", tags=["archiving"])


@router.get("", summary="The execution instances archived, with their archiving DAG")
async def list_archiving_workflows() -> list[ArchivingWorkflow]:
    instances = await asyncio.to_thread(registry.archiving_instances)
    return [ArchivingWorkflow(**registry.workflow(name)) for name in instances]


@router.post(
    "/{instance}",
    status_code=status.HTTP_201_CREATED,
    responses={
        422: {
            "model": ValidationErrorsOrMessage,
            "description": "Invalid instance name, or no usable connection mc_exec_<instance>",
        }
    },
    summary="Create the archiving workflow of execution instance <instance> (connection mc_exec_<instance>)",
)
async def create_archiving_workflow(instance: str) -> ArchivingWorkflow:
    try:
        created = await asyncio.to_thread(actions.register_instance, instance)
    except ConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return ArchivingWorkflow(**created)
