"""``/api/v1/events``: push events into a queue and read them back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from messagecenter.api.deps import ApiState, ConnDep, StateDep
from messagecenter.api.models import (
    ErrorMessage,
    EventCreated,
    EventPublic,
    EventsCreated,
    ValidationErrors,
)
from messagecenter.core.types import Queue
from messagecenter.intake import store
from messagecenter.intake.decode import EventIn, IntakeError, decode_push

router = APIRouter(prefix="/events", tags=["events"])

_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrors, "description": "Refused content, naming the item and field at fault"},
}
PUSH_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Stored (or already stored under the same idempotency key with the same content)",
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true` when an event of the request was already stored under its key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    409: {
        "model": ErrorMessage,
        "description": "The Idempotency-Key or an external_id already stands for different content",
    },
    413: {"model": ErrorMessage, "description": "The body is larger than MC_MAX_BODY_BYTES"},
    **_REFUSED,
}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, state: ApiState) -> tuple[list[EventIn], bool]:
    try:
        return decode_push(body, state.settings.intake)
    except IntakeError as exc:
        raise RequestValidationError(exc.errors) from None


@router.post(
    "/{queue}",
    status_code=status.HTTP_201_CREATED,
    response_model=EventCreated | EventsCreated,
    responses=PUSH_RESPONSES,
    openapi_extra={
        # The app puts in the schema of the configured limits (main.py), read on first use.
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
    summary="Push one event, or a batch of events (at most MC_MAX_BATCH) stored all or nothing",
)
async def push_events(
    queue: Queue,
    request: Request,
    response: Response,
    state: StateDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> EventCreated | EventsCreated:
    if idempotency_key and "\x00" in idempotency_key:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ["header", "idempotency-key"],
                    "msg": "Idempotency-Key must not contain NUL characters",
                }
            ]
        )
    body = await _read_body(request, state.settings.intake.max_body_bytes)

    def decode_and_store() -> tuple[store.InsertResult, bool]:
        # One worker-thread hop for both: decoding 10,000 events must not block the event loop.
        events, is_batch = _decode(body, state)
        with state.pool.connection() as conn:
            result = store.insert_events(
                conn,
                queue,
                events,
                instance_id=state.settings.instance_id,
                idempotency_key=idempotency_key,
                batch=is_batch,
            )
        return result, is_batch

    try:
        result, is_batch = await run_in_threadpool(decode_and_store)
    except store.IdempotencyConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return EventsCreated(ids=result.ids) if is_batch else EventCreated(id=result.ids[0])


@router.get(
    "/{queue}/{event_id}",
    responses={404: {"model": ErrorMessage, "description": "No such event in this queue"}, **_REFUSED},
    summary="Read an event with its status code and name",
)
def read_event(queue: Queue, event_id: int, conn: ConnDep) -> EventPublic:
    row = store.get_event(conn, queue, event_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id} in queue {queue}")
    return EventPublic.model_validate(row)
