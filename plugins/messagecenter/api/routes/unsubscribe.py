"""``/api/v1/unsubscribe/{token}``: RFC 8058 one-click unsubscribe, and the page a mail client opens.

The signed token is the credential (no bearer token): it names the channel, the address and the
message, under an HMAC of ``MC_FEEDBACK_SECRET``. ``POST`` with ``List-Unsubscribe=One-Click`` (what
mailbox providers send) denylists the address and records the unsubscribe on the message's delivery
log; ``GET`` shows a page whose button posts the same. A token that does not verify is a 404, as an
unknown page would be: nothing tells a guesser how close it came.
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from messagecenter.api.deps import ApiState, StateDep, read_body
from messagecenter.api.models import ErrorMessage, Unsubscribed
from messagecenter.core.types import Channel
from messagecenter.feedback import rules
from messagecenter.feedback.apply import Feedback, apply_feedback
from messagecenter.feedback.quarantine import AddressStatus, set_status
from messagecenter.feedback.unsubscribe import MAX_TOKEN_CHARS, ONE_CLICK_BODY, Unsubscription, read_token

log = logging.getLogger(__name__)

router = APIRouter(prefix="/unsubscribe", tags=["unsubscribe"])

SOURCE = "unsubscribe"
MAX_BODY_BYTES = 8 * 1024  # the body is one short form field
_FIELD, _VALUE = ONE_CLICK_BODY.split("=", 1)
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorMessage, "description": "No such unsubscribe link (malformed or forged token)"},
    503: {"model": ErrorMessage, "description": "No MC_FEEDBACK_SECRET configured, or the database down"},
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.5rem 1.25rem;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{content}</body></html>
"""


def _subscription(state: ApiState, token: str) -> Unsubscription:
    key = state.settings.feedback.key
    if key is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "one-click unsubscribe is not configured")
    found = read_token(token, key) if len(token) <= MAX_TOKEN_CHARS else None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such unsubscribe link")
    return found


def _masked(address: str) -> str:
    """Enough of the address for its owner to recognise it, not all of it for whoever holds the link."""
    local, at, domain = address.partition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    return f"***{address[-4:]}" if len(address) > 4 else "***"


def is_one_click(content_type: str, body: bytes) -> bool:
    """Whether the body is RFC 8058's ``List-Unsubscribe=One-Click`` (form-encoded or multipart)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        parser = email.parser.BytesParser(policy=email.policy.HTTP)
        message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        for part in message.iter_parts() if message.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == _FIELD:
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes) and payload.strip() == _VALUE.encode():
                    return True
        return False
    try:
        fields = parse_qsl(body.decode("utf-8").strip(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return (_FIELD, _VALUE) in fields


def _unsubscribe(state: ApiState, found: Unsubscription) -> None:
    """Denylist the address and record the unsubscribe on the message's delivery log, in one transaction."""
    with state.pool.connection() as conn, conn.transaction():
        set_status(
            conn,
            found.channel,
            found.address,
            AddressStatus.DENYLISTED,
            reason="one-click unsubscribe",
            source=SOURCE,
        )
        item = Feedback(source=SOURCE, kind="unsubscribe", event_id=found.event_id)
        apply_feedback(conn, [item], qualify=rules.qualifier(conn), rules=state.settings.feedback)


HTML: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}


@router.get(
    "/{token}",
    response_model=None,
    responses={200: {"description": "The page, with its button", "content": HTML}, **RESPONSES},
    summary="The page an unsubscribe link opens: one button that unsubscribes",
)
async def unsubscribe_page(token: str, state: StateDep) -> HTMLResponse:
    found = _subscription(state, token)
    what = "e-mails" if found.channel == Channel.EMAIL else "messages"
    content = (
        f"<p>Stop receiving these {what} at <strong>{html.escape(_masked(found.address))}</strong>?</p>"
        f'<form method="post"><input type="hidden" name="{_FIELD}" value="{_VALUE}">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(
        _PAGE.format(title="Unsubscribe", content=content),
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.post(
    "/{token}",
    response_model=Unsubscribed,
    responses={
        200: {"description": "Unsubscribed (a page when the caller accepts text/html)", "content": HTML},
        400: {"model": ErrorMessage, "description": "The body is not List-Unsubscribe=One-Click"},
        413: {"model": ErrorMessage, "description": "The body is larger than a one-click form"},
        **RESPONSES,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {_FIELD: {"type": "string", "enum": [_VALUE]}},
                        "required": [_FIELD],
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {_FIELD: {"type": "string", "enum": [_VALUE]}},
                        "required": [_FIELD],
                    }
                },
            },
        }
    },
    summary="One-click unsubscribe (RFC 8058): denylist the address of the link",
)
async def unsubscribe(token: str, request: Request, state: StateDep) -> Any:
    found = _subscription(state, token)
    body = await read_body(request, MAX_BODY_BYTES)
    if not is_one_click(request.headers.get("content-type", ""), body):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the body must be {ONE_CLICK_BODY}")
    await run_in_threadpool(_unsubscribe, state, found)
    log.info("One-click unsubscribe: %s address denylisted (event %d)", found.channel.label, found.event_id)
    answer = Unsubscribed(channel=found.channel.label, address=found.address, status="denylisted")
    if "text/html" in request.headers.get("accept", ""):  # the page's button, in a browser
        content = "<p>You will receive no more of these messages.</p>"
        return HTMLResponse(_PAGE.format(title="Unsubscribed", content=content))
    return JSONResponse(answer.model_dump())
