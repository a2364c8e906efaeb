"""The API's output models, errors included (the input contract is ``messagecenter.intake.decode``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from messagecenter.core.types import ChannelName


class EventCreated(BaseModel):
    """Answer to a single push."""

    id: int


class EventsCreated(BaseModel):
    """Answer to a batch push: the ids in the order of the request."""

    ids: list[int]


class EventPublic(BaseModel):
    """An event as the API shows it, with its status code and name."""

    id: int
    queue: Literal["rt", "batch"]
    type: str
    channel: ChannelName
    status: int
    status_name: str
    email: str | None = None
    mobile_phone: str | None = None
    push_token: str | None = None
    external_id: str | None = None
    language: str | None = None
    country: str | None = None
    origin: str | None = None
    ctx: dict[str, Any] = Field(default_factory=dict)
    created: datetime
    scheduled: datetime | None = None
    template_id: int | None = None
    template_version: int | None = None
    errors: int = 0
    next_try: datetime | None = None
    processed: datetime | None = None
    last_modified: datetime


class Health(BaseModel):
    """ACC's mcPing: is the instance up, and how much work waits."""

    status: Literal["ok"]
    instance_id: int
    pending: dict[str, int]
    schema_version: int


class ArchivingWorkflow(BaseModel):
    """An execution instance the control instance archives, and the DAG that does it."""

    instance: str
    connection: str
    dag_id: str


class ErrorMessage(BaseModel):
    """An error explained in one sentence (401, 404, 409, 413, 503)."""

    detail: str


class FieldError(BaseModel):
    """One problem of a refused request, FastAPI-style: where (``loc``), what (``msg``), which kind."""

    type: str
    loc: list[str | int] = Field(description='where, e.g. ["body", "events", 3, "ctx"]')
    msg: str


class ValidationErrors(BaseModel):
    """A request refused for its content (422), naming the item and field at fault."""

    detail: list[FieldError]


class ValidationErrorsOrMessage(BaseModel):
    """A 422 of a route that also refuses in one sentence."""

    detail: list[FieldError] | str
