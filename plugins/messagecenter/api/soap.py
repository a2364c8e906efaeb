"""Campaign's SOAP interface over HTTP: ``POST /nl/jsp/soaprouter.jsp`` and ``/nl/jsp/schemawsdl.jsp``.

Existing Campaign integrations push events unchanged: ``nms:rtEvent`` and ``nms:batchEvent``
``PushEvent`` / ``PushEvents`` store into the ``rt`` / ``batch`` queue exactly what the REST push
stores (``messagecenter.intake.soap`` reads the XML and maps it onto the REST contract).

Credentials are the API tokens (``MC_API_TOKENS`` or the ``mc_api`` connection). A call is accepted
when one of the credentials it carries is valid:

* ``Authorization: Bearer <token>`` (Campaign's IMS form; ``<sessiontoken>`` is then empty);
* a session token, from the ``<sessiontoken>`` parameter, the ``X-Session-Token`` header, the
  ``__sessiontoken`` cookie or a ``<Cookie>__sessiontoken=...</Cookie>`` SOAP header, which is either
  ``login/password`` with an API token as the password (any login; Campaign's ``mc/PASSWORD``), or a
  token issued by ``xtk:session#Logon`` (valid 24 hours, or until its API token is removed).

A call without a valid credential gets Campaign's "Invalid login or password" fault, and nothing is
stored. Every fault is answered with HTTP 200, as Campaign does (clients read faults only there).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from psycopg_pool import PoolTimeout

from messagecenter import __version__
from messagecenter.airflow.connections import matching_token
from messagecenter.api.deps import NOT_CONFIGURED, ApiState
from messagecenter.core.errors import ConfigError
from messagecenter.intake import store
from messagecenter.intake.soap import (
    EVENT_SERVICES,
    EventRefused,
    SoapCall,
    SoapFault,
    decode_events,
    parse_action,
    parse_call,
)
from messagecenter.intake.soap.faults import (
    invalid_login,
    invalid_message,
    method_error,
    parameter_error,
)
from messagecenter.intake.soap.responses import (
    CONTENT_TYPE,
    entity_response,
    logoff_response,
    logon_response,
    push_event_response,
    push_events_response,
    schema_entity,
)
from messagecenter.intake.soap.wsdl import SCHEMAS, wsdl

log = logging.getLogger(__name__)

SESSION_SECONDS = 86_400  # Campaign's default session lifetime
_SESSION_PREFIX = "___"  # Campaign's session tokens start so
_SESSION_DOMAIN = b"messagecenter soap session:"
_MAX_CREDENTIAL = 4096


# -- Credentials ------------------------------------------------------------------------------------


def _mac(token: str, payload: str) -> str:
    return hmac.new(token.encode(), _SESSION_DOMAIN + payload.encode(), hashlib.sha256).hexdigest()


def issue_session_token(token: str, now: float | None = None) -> str:
    """A session token for ``xtk:session#Logon``: an expiry and a nonce signed with the API token
    (HMAC-SHA256), so any process holding the same tokens accepts it, and none keeps state."""
    expiry = int(time.time() if now is None else now) + SESSION_SECONDS
    payload = f"{expiry:x}.{secrets.token_hex(8)}"
    return f"{_SESSION_PREFIX}{payload}.{_mac(token, payload)}"


def _valid_session_token(tokens: tuple[str, ...], value: str) -> bool:
    payload, sep, mac = value.removeprefix(_SESSION_PREFIX).rpartition(".")
    expiry, _, _ = payload.partition(".")
    try:
        if not sep or int(expiry, 16) < time.time():
            return False
    except ValueError:
        return False
    valid = [hmac.compare_digest(mac.encode(), _mac(token, payload).encode()) for token in tokens]
    return any(valid)


def valid_credential(tokens: tuple[str, ...], value: str, *, bearer: bool = False) -> bool:
    """Whether ``value`` authenticates: an API token (``bearer``), else ``login/token`` or a token
    issued by Logon."""
    value = value.strip()  # an indented <sessiontoken> carries layout around the token
    if not value or len(value) > _MAX_CREDENTIAL:
        return False
    if bearer:
        return matching_token(tokens, value) is not None
    if value.startswith(_SESSION_PREFIX):
        return _valid_session_token(tokens, value)
    _login, sep, password = value.partition("/")
    return bool(sep) and matching_token(tokens, password) is not None


def _http_credentials(request: Request) -> tuple[str | None, list[str]]:
    """The bearer token and the session tokens of the HTTP request (headers and cookie)."""
    bearer = None
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        bearer = value.strip()
    sessions = [request.headers.get("x-session-token", ""), request.cookies.get("__sessiontoken", "")]
    return bearer, [s for s in sessions if s]


# -- Methods ----------------------------------------------------------------------------------------


def _now_xtk() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _logon(state: ApiState, call: SoapCall) -> bytes:
    """``Logon(sessiontoken, strLogin, strPassword, elemParameters)`` or
    ``BearerTokenLogon(sessiontoken, strBearerToken)``: an API token buys a session token."""
    bearer = call.method == "BearerTokenLogon"
    login, secret = ("", call.text(1).strip()) if bearer else (call.text(1).strip(), call.text(2).strip())
    token = matching_token(state.tokens, secret) if secret and len(secret) <= _MAX_CREDENTIAL else None
    if token is None:
        raise invalid_login(call.service, call.method)
    return logon_response(
        call.method,
        issue_session_token(token),
        # Not checked (sessions need no security token here), but clients expect one.
        "@" + secrets.token_urlsafe(32),
        login=login or "mc",
        instance_name=f"messagecenter-{state.settings.instance_id}",
        version=__version__,
        server_date=_now_xtk(),
        timeout_seconds=SESSION_SECONDS,
    )


def _entity(call: SoapCall) -> bytes:
    """``GetEntityIfMoreRecent(sessiontoken, pk, md5, mustExist)``: the schemas of the event services
    (which clients read to learn the methods' parameters); any other entity is not found (empty)."""
    entity_type, _, name = call.text(1).partition("|")
    known = entity_type == "xtk:schema" and name in EVENT_SERVICES
    return entity_response(schema_entity(name) if known else None)


def _conflict(exc: store.IdempotencyConflict) -> str:
    where = "" if exc.index is None else f" (event {exc.index})"
    return f"@externalId {exc.key!r}{where} is already stored with different content"


def _push(state: ApiState, call: SoapCall) -> bytes:
    """``PushEvent(sessiontoken, domEvent)`` / ``PushEvents(sessiontoken, domEventCollection)``."""
    service, method = call.service, call.method
    many = method == "PushEvents"
    if len(call.params) < 2:
        raise parameter_error(service, method, "the event document (second parameter) is missing")
    settings = state.settings
    try:
        events = decode_events(call.params[1], settings.intake, many=many)
    except EventRefused as exc:
        raise method_error(service, method, str(exc)) from None
    with state.pool.connection() as conn:
        try:
            result = store.insert_events(
                conn, EVENT_SERVICES[service], events, instance_id=settings.instance_id, batch=many
            )
        except store.IdempotencyConflict as exc:
            raise method_error(service, method, _conflict(exc)) from None
    if many:
        return push_events_response(service, result.ids)
    return push_event_response(service, result.ids[0])


def handle(
    state: ApiState,
    body: bytes,
    *,
    charset: str | None,
    soap_action: str | None,
    bearer: str | None = None,
    sessions: tuple[str, ...] | list[str] = (),
) -> bytes:
    """Answer one request to ``soaprouter.jsp`` (blocking: parses, may read tokens, writes)."""
    where = parse_action(soap_action) or ("", "")
    try:
        call = parse_call(body, charset=charset, soap_action=soap_action)
        where = call.service, call.method
        if call.method == "Logoff":  # nothing to end: session tokens are not kept
            return logoff_response()
        if call.method in ("Logon", "BearerTokenLogon"):
            return _logon(state, call)
        tokens = state.tokens
        presented = [call.text(0), *call.header_tokens, *sessions]
        authenticated = [valid_credential(tokens, value) for value in presented if value]
        if bearer is not None:
            authenticated.append(valid_credential(tokens, bearer, bearer=True))
        if not any(authenticated):
            raise invalid_login(*where)
        if call.method == "GetEntityIfMoreRecent":
            return _entity(call)
        return _push(state, call)
    except SoapFault as fault:
        return fault.to_xml()
    except ConfigError as exc:
        log.error("Configuration error: %s", exc)
        return method_error(*where, NOT_CONFIGURED, code="Server").to_xml()
    except (psycopg.OperationalError, PoolTimeout) as exc:
        log.error("Execution database unavailable: %s", exc)
        return method_error(*where, "execution database unavailable", code="Server").to_xml()
    except Exception:
        log.exception("SOAP call %s#%s failed", *where)
        return method_error(*where, "internal error", code="Server").to_xml()


# -- HTTP -------------------------------------------------------------------------------------------


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


def _soap_action(request: Request) -> str | None:
    header = request.headers.get("soapaction", "").strip().strip("\"'").strip()
    if header:
        return header
    for name, value in request.query_params.multi_items():
        if name.lower() == "soapaction" and value:
            return value
    return None


async def _read_body(request: Request, limit: int, where: tuple[str, str]) -> bytes:
    too_large = invalid_message(*where, f"the request body is larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _xml(content: bytes) -> Response:
    return Response(content, media_type=CONTENT_TYPE)


async def soap_router_endpoint(request: Request) -> Response:
    state: ApiState = request.app.state.mc
    soap_action = _soap_action(request)
    where = parse_action(soap_action) or ("", "")
    try:
        limit = state.settings.intake.soap_max_body_bytes
    except ConfigError as exc:
        log.error("Configuration error: %s", exc)
        return _xml(method_error(*where, NOT_CONFIGURED, code="Server").to_xml())
    try:
        body = await _read_body(request, limit, where)
    except SoapFault as fault:
        return _xml(fault.to_xml())
    bearer, sessions = _http_credentials(request)
    content = await run_in_threadpool(
        handle,
        state,
        body,
        charset=_charset(request.headers.get("content-type", "")),
        soap_action=soap_action,
        bearer=bearer,
        sessions=sessions,
    )
    return _xml(content)


async def schema_wsdl_endpoint(request: Request, schema: str = "") -> Response:
    """The WSDL of ``nms:rtEvent``, ``nms:batchEvent`` or ``xtk:session`` (no credentials needed: it
    holds none). Its port is the ``soaprouter.jsp`` next to this page, at the URL it was asked from."""
    if schema not in SCHEMAS:
        known = ", ".join(sorted(SCHEMAS))
        return PlainTextResponse(f"Unknown schema {schema!r}; one of {known}", status_code=404)
    location = str(request.url.replace(query="")).rsplit("/", 1)[0] + "/soaprouter.jsp"
    return _xml(wsdl(schema, location))


def soap_router(prefix: str = "") -> APIRouter:
    """The SOAP routes under ``prefix`` (``/nl`` in the intake API; the plugin's app is mounted at
    ``/nl``). Not in the OpenAPI document: SOAP is described by its WSDL."""
    router = APIRouter(prefix=prefix, include_in_schema=False)
    router.add_api_route("/jsp/soaprouter.jsp", soap_router_endpoint, methods=["POST"], name="soaprouter")
    router.add_api_route(
        "/jsp/schemawsdl.jsp", schema_wsdl_endpoint, methods=["GET", "POST"], name="schemawsdl"
    )
    return router
