"""Event statuses and channels, and the API's output models (the input contract is in ``intake``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Channel = Literal["email", "sms", "ios", "android"]
# Campaign channel codes, as stored.
CHANNEL_CODES: dict[str, int] = {"email": 0, "sms": 1, "ios": 41, "android": 42}
CHANNEL_NAMES: dict[int, str] = {code: name for name, code in CHANNEL_CODES.items()}

PENDING, PENDING_DELIVERY, SENT, IGNORED, FAILED, NOT_TAKEN_INTO_ACCOUNT, EXPIRED = range(7)
STATUS_NAMES: dict[int, str] = {
    PENDING: "Pending",
    PENDING_DELIVERY: "Pending delivery",
    SENT: "Sent",
    IGNORED: "Ignored by the delivery",
    FAILED: "Delivery failed",
    NOT_TAKEN_INTO_ACCOUNT: "Event not taken into account",
    EXPIRED: "Event expired",
}
FINAL_STATUSES = frozenset({SENT, IGNORED, FAILED, NOT_TAKEN_INTO_ACCOUNT, EXPIRED})


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
    channel: Channel
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
