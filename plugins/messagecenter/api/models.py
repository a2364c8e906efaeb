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
    delivery: Literal["delivered", "failed"] | None = Field(
        default=None, description="what the provider said after the send: delivered, failed, or nothing yet"
    )
    failure_type: str | None = Field(
        default=None, description="Soft, Hard or Ignored (Campaign's failure types)"
    )
    failure_reason: str | None = Field(
        default=None, description='Campaign\'s failure reason, e.g. "User unknown"'
    )
    feedback_at: datetime | None = Field(
        default=None, description="when the last feedback on the delivery arrived"
    )


class FeedbackReceived(BaseModel):
    """What a provider webhook request did (the counts of the feedback applied)."""

    provider: str
    events: int = Field(default=0, description="events read from the request (engagement events are skipped)")
    received: int = 0
    duplicates: int = Field(default=0, description="events applied before (a retried or replayed request)")
    applied: int = Field(default=0, description="delivery logs changed")
    unmatched: int = Field(
        default=0, description="events whose delivery log was not found (kept, matched later)"
    )
    failed: int = Field(default=0, description="logs turned from Sent into Failed")
    quarantined: int = 0
    denylisted: int = 0
    unqualified: int = Field(default=0, description="error texts no qualification rule knew")
    confirmed_topic: str | None = Field(
        default=None, description="SES: the SNS topic whose subscription was confirmed"
    )


NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL characters
# An address as the quarantine keys it: no NUL, something besides white space (spelled out: what
# Python's str.strip() removes, so that the schema and the code agree), short enough for a btree key
# whatever its script.
_WHITE_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ADDRESS_PATTERN = rf"^[^\x00]*[^\x00{_WHITE_SPACE}][^\x00]*$"
MAX_ADDRESS_CHARS = 500
QuarantineStatus = Literal["valid", "with_errors", "quarantine", "denylisted"]


class AddressState(BaseModel):
    """An address's quarantine state on one channel (Campaign's statuses)."""

    channel: ChannelName
    address: str
    status: QuarantineStatus
    errors: int = Field(default=0, description="significant errors counted")
    reason: str | None = None
    failure_reason: str | None = Field(
        default=None, description='Campaign\'s failure reason, e.g. "User unknown"'
    )
    last_error: datetime | None = None
    source: str | None = Field(
        default=None, description="what set the status: a bounce, a provider, an operator..."
    )
    updated: datetime | None = None


class AddressStates(BaseModel):
    """Addresses that are not valid, newest change first."""

    items: list[AddressState]


class QuarantineIn(BaseModel):
    """An operator puts an address in quarantine or on the denylist."""

    channel: ChannelName = "email"
    address: str = Field(min_length=1, max_length=MAX_ADDRESS_CHARS, pattern=ADDRESS_PATTERN)
    status: Literal["quarantine", "denylisted"] = "quarantine"
    reason: str | None = Field(default=None, max_length=1_000, pattern=NO_NUL)


class Unsubscribed(BaseModel):
    """A one-click unsubscribe done: the address receives nothing more on that channel."""

    channel: ChannelName
    address: str
    status: QuarantineStatus


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
