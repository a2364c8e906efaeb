"""Dependencies shared by the routes: settings, the connection pool, and bearer-token auth."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from messagecenter.airflow.connections import api_tokens, matching_token
from messagecenter.airflow.hooks import MessageCenterDbHook
from messagecenter.core.settings import API_CONN_ID, Settings, get_settings
from messagecenter.feedback.webhooks import CachedFetcher, fetch_url

log = logging.getLogger(__name__)

# What a caller learns of a configuration error (a setting, a connection): nothing it could use. The
# caller may not be authenticated (the tokens are configuration too); the detail goes to the log.
NOT_CONFIGURED = "service not configured"


@dataclass
class WebhookTools:
    """What verifying provider webhooks needs from the outside world, replaceable in tests.

    :param clock: the current time, epoch seconds (signed timestamps are checked against it).
    :param fetch_certificate: GETs an SNS signing certificate (cached per URL for the app's life).
    :param http_get: GETs an SNS ``SubscribeURL`` to confirm a subscription.
    """

    clock: Callable[[], float] = time.time
    fetch_certificate: Callable[[str], bytes] = field(default_factory=CachedFetcher)
    http_get: Callable[[str], bytes] = fetch_url


class ApiState:
    """Per-app resources, created on first use so building the app never touches a database."""

    def __init__(self, settings: Settings | None = None, dsn: str | None = None) -> None:
        self._settings = settings
        self._dsn = dsn
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._tokens: tuple[str, ...] | None = None
        self.webhooks = WebhookTools()

    @property
    def settings(self) -> Settings:
        # Read on first use, not when the app is built: the plugin builds it when Airflow imports
        # plugins, which can be long before the process's environment is final.
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                conninfo = MessageCenterDbHook(self.settings.execution_conn_id, dsn=self._dsn).conninfo
                self._pool = ConnectionPool(
                    conninfo, min_size=1, max_size=16, open=True, name="messagecenter-api", timeout=10
                )
            return self._pool

    @property
    def tokens(self) -> tuple[str, ...]:
        with self._lock:
            if self._tokens is None:
                self._tokens = api_tokens(self.settings)
                if not self._tokens:
                    log.warning("No API token configured (MC_API_TOKENS or connection %s)", API_CONN_ID)
            return self._tokens

    @property
    def loaded_tokens(self) -> tuple[str, ...] | None:
        """The tokens if already loaded (no lookup, no lock: a tuple is replaced atomically)."""
        return self._tokens

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


# Dependencies that do not block are ``async``: FastAPI runs a sync one in a worker thread, and
# those thread hops were most of a single push's latency.


async def get_state(request: Request) -> ApiState:
    return request.app.state.mc


StateDep = Annotated[ApiState, Depends(get_state)]


def get_conn(state: StateDep) -> Iterator[psycopg.Connection[Any]]:
    with state.pool.connection() as conn:
        yield conn


ConnDep = Annotated[psycopg.Connection[Any], Depends(get_conn)]


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, read once; 413 as soon as it is known to be over ``limit`` bytes."""
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


_bearer = HTTPBearer(auto_error=False, description="A token from MC_API_TOKENS or the mc_api connection")


async def require_token(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Refuse the call unless it carries one of the configured bearer tokens."""
    tokens = state.loaded_tokens
    if tokens is None:  # first call: may read the mc_api connection, which can block
        tokens = await run_in_threadpool(lambda: state.tokens)
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    if matching_token(tokens, credentials.credentials) is None:
        raise unauthorized
