"""The standalone API keeps the ASGI server's loggers (its access log above all) as the server set them.

Airflow configures logging when it is first imported, which in the standalone API happens at the
first request that reads an Airflow connection (the execution database's, ``mc_api``, a provider
webhook's). That configuration empties uvicorn's and gunicorn's access loggers (Airflow's own API
server logs requests another way) and moves their error loggers onto its handler on stdout: the
access log would stop at that request. Mounted in the Airflow API server, the app leaves Airflow's
choice alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")


@dataclass(frozen=True)
class LoggerState:
    handlers: tuple[logging.Handler, ...]
    level: int
    propagate: bool
    disabled: bool

    @classmethod
    def of(cls, logger: logging.Logger) -> LoggerState:
        return cls(tuple(logger.handlers), logger.level, logger.propagate, logger.disabled)

    def apply(self, logger: logging.Logger) -> None:
        logger.handlers = list(self.handlers)
        logger.setLevel(self.level)
        logger.propagate = self.propagate
        logger.disabled = self.disabled


class KeepServerLoggers:
    """ASGI middleware: the server's loggers as they were at startup (the first ASGI call, lifespan
    or request, comes after the server configured its logging), put back if anything changed them
    when a response starts (uvicorn logs the access line then) and when a request ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.saved: list[tuple[logging.Logger, LoggerState]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.saved is None:
            loggers = [logging.getLogger(name) for name in SERVER_LOGGERS]
            self.saved = [(logger, LoggerState.of(logger)) for logger in loggers]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_keeping_loggers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.restore()
            await send(message)

        try:
            await self.app(scope, receive, send_keeping_loggers)
        finally:  # an error's 500 is sent outside this middleware, after it
            self.restore()

    def restore(self) -> None:
        for logger, state in self.saved or ():
            if LoggerState.of(logger) != state:
                state.apply(logger)
