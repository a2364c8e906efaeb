"""Decode and validate pushed events: the contract of ``POST /api/v1/events/{queue}``.

The intake path is the hottest code of an execution instance, so events are decoded with msgspec
(already an Airflow dependency): one pass over the bytes, about five times faster than building
pydantic models, and ``ctx`` stays raw JSON text that goes to ``COPY`` as is instead of being parsed
into Python objects and serialised again. Errors are reported like FastAPI's: ``loc``, ``msg`` and
``type``, naming the item index and the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from messagecenter.core.types import Channel, ChannelName

DEFAULT_MAX_CTX_BYTES = 64 * 1024
EMPTY_CTX = msgspec.Raw(b"{}")
_CHANNEL_CODES = {channel.label: int(channel) for channel in Channel}

EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
Phone = Annotated[str, msgspec.Meta(max_length=32, pattern=r"^\+?[0-9][0-9 ().-]{2,31}$")]
PushToken = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Language = Annotated[str, msgspec.Meta(min_length=1, max_length=35)]
Country = Annotated[str, msgspec.Meta(min_length=1, max_length=8)]


class EventIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One event pushed by an external application.

    ``ctx`` is the personalisation object, kept as raw JSON; ``scheduled`` is ISO 8601 (naive = UTC).
    """

    type: EventType
    channel: ChannelName = "email"
    email: Email | None = None
    mobile_phone: Phone | None = None
    push_token: PushToken | None = None
    external_id: Text | None = None
    language: Language | None = None
    country: Country | None = None
    origin: Text | None = None
    scheduled: datetime | None = None
    ctx: msgspec.Raw = msgspec.field(default_factory=lambda: EMPTY_CTX)  # a factory keeps the schema JSON

    def __post_init__(self) -> None:
        if self.scheduled is not None and self.scheduled.tzinfo is None:
            self.scheduled = self.scheduled.replace(tzinfo=UTC)

    @property
    def channel_code(self) -> int:
        return _CHANNEL_CODES[self.channel]

    @property
    def ctx_json(self) -> str:
        """``ctx`` as JSON text, as stored."""
        return bytes(self.ctx).decode()


class EventBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """Several events in one request, stored all or nothing."""

    events: list[EventIn]


class IntakeError(ValueError):
    """The body was refused; ``errors`` are FastAPI-style dicts (``type``, ``loc``, ``msg``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


_SINGLE = msgspec.json.Decoder(EventIn)
_BATCH = msgspec.json.Decoder(EventBatchIn)
# A valid batch has exactly one key, "events", so its first key tells the two shapes apart.
_BATCH_SHAPE = re.compile(rb'\A\s*\{\s*"events"\s*:')
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_FIELD_IN_MSG = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def _loc(message: str) -> tuple[str, list[str | int]]:
    """Split msgspec's ``"Expected ... - at `$.events[3].channel`"`` into message and location."""
    text, _, path = message.partition(" - at `")
    loc: list[str | int] = [m[1] or int(m[2]) for m in _PATH_PART.finditer(path.rstrip("`"))]
    field = _FIELD_IN_MSG.search(text)
    if field:
        loc.append(field[1])
    return text, loc


def _error_type(message: str) -> str:
    if "missing required field" in message:
        return "missing"
    if "unknown field" in message:
        return "extra_forbidden"
    return "value_error"


def decode_push(
    body: bytes, *, max_batch: int = 10_000, max_ctx_bytes: int = DEFAULT_MAX_CTX_BYTES
) -> tuple[list[EventIn], bool]:
    """Decode a push body: one event, or ``{"events": [...]}``. Return the events and whether it was
    a batch; raise :class:`IntakeError` naming the item and field of the first problem."""
    is_batch = _BATCH_SHAPE.match(body) is not None
    try:
        events = _BATCH.decode(body).events if is_batch else [_SINGLE.decode(body)]
    except msgspec.ValidationError as exc:
        text, loc = _loc(str(exc))
        raise IntakeError([{"type": _error_type(text), "loc": ["body", *loc], "msg": text}]) from None
    except msgspec.DecodeError as exc:
        raise IntakeError(
            [{"type": "json_invalid", "loc": ["body"], "msg": f"malformed JSON: {exc}"}]
        ) from None
    if is_batch and not events:
        raise IntakeError([{"type": "too_short", "loc": ["body", "events"], "msg": "at least one event"}])
    if len(events) > max_batch:
        raise IntakeError(
            [
                {
                    "type": "too_long",
                    "loc": ["body", "events"],
                    "msg": f"at most {max_batch} events per request, got {len(events)}",
                }
            ]
        )
    check_ctx(events, max_ctx_bytes, prefix=["body", "events"] if is_batch else ["body"])
    return events, is_batch


def check_ctx(events: Sequence[EventIn], max_ctx_bytes: int, prefix: list[str | int]) -> None:
    """``ctx`` must be a JSON object, fit the size limit, and hold no NUL (PostgreSQL jsonb refuses it)."""
    for index, event in enumerate(events):
        raw = bytes(event.ctx)
        problem = None
        if not raw.lstrip().startswith(b"{"):
            problem = "ctx must be a JSON object"
        elif len(raw) > max_ctx_bytes:
            problem = f"ctx is larger than {max_ctx_bytes} bytes"
        elif b"\\u0000" in raw:
            problem = "ctx must not contain NUL characters"
        if problem:
            loc = [*prefix, index, "ctx"] if len(prefix) > 1 else [*prefix, "ctx"]
            raise IntakeError([{"type": "value_error", "loc": loc, "msg": problem}])


def event_from_dict(data: dict[str, Any]) -> EventIn:
    """Build one validated event from a Python dict (CLI, tests, DAG code)."""
    events, _ = decode_push(msgspec.json.encode(data))
    return events[0]


def request_schema() -> dict[str, Any]:
    """JSON Schema of the push body (one event or a batch), for the OpenAPI document."""
    (event,), components = msgspec.json.schema_components([EventIn], ref_template="{name}")
    event = components["EventIn"]
    event["properties"]["ctx"] = {"type": "object", "description": "personalisation data"}
    batch = {
        "title": "EventBatchIn",
        "type": "object",
        "properties": {"events": {"type": "array", "items": event, "minItems": 1, "maxItems": 10_000}},
        "required": ["events"],
        "additionalProperties": False,
    }
    return {"oneOf": [event, batch]}
