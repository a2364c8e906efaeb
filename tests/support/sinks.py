"""Real message sinks for tests: an SMTP server (aiosmtpd, in process) and an HTTP provider.

Both record what they receive and answer from a programmable queue of replies, so a test can make
the transport see a transient or a permanent error on the wire.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from devstack.sinks import Reply

SENDER = "mc@example.com"


def free_port() -> int:
    """A port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    peer: tuple[str, int]  # client address: one per SMTP connection
    mail_from: str
    rcpt_tos: list[str]
    mail: EmailMessage


@dataclass
class Recorder:
    """aiosmtpd handler: stores accepted mail; answers DATA (and RCPT) from programmable replies."""

    data_replies: deque[str] = field(default_factory=deque)
    rcpt_reply: str | None = None
    received: list[Received] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)  # every DATA, accepted or not

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)
        reply = self.data_replies.popleft() if self.data_replies else "250 OK"
        if reply.startswith("250"):
            mail = message_from_bytes(envelope.original_content, policy=policy.default)
            self.received.append(Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), mail))
        return reply

    def event_ids(self) -> list[int]:
        return [int(r.mail["X-MC-Event-Id"]) for r in self.received]


class SlowRecorder(Recorder):
    """Accepts every mail, slowly (until told otherwise) so that the worker is caught mid-chunk."""

    delay = 0.01

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class SmtpSink:
    """An SMTP server on a free loopback port; ``connection()`` is its Airflow connection as JSON."""

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder or Recorder()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=free_port())

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    def connection(self, **extra: Any) -> str:
        extras = {
            "from_email": SENDER,
            "disable_ssl": True,
            "disable_tls": True,
            "timeout": 5,
            "retry_limit": 0,
        }
        return json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": {**extras, **extra}}
        )


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any
    client: tuple[str, int]  # one client port per TCP connection
    at: float = field(default_factory=time.monotonic)  # when it arrived


class Provider(ThreadingHTTPServer):
    """A fake SMS/push provider: records every POST, answers from a queue (default 200 {"id": "m-1"})."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Request] = []
        self.replies: deque[Reply] = deque()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def connection(self, endpoint: str = "/send") -> str:
        return json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": self.port, "extra": {"endpoint": endpoint}}
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout test) makes the late write fail: expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible
    server: Provider

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.loads(raw) if raw else None
        self.server.requests.append(Request(self.path, dict(self.headers), body, self.client_address))
        reply = self.server.replies.popleft() if self.server.replies else Reply()
        if reply.delay:
            time.sleep(reply.delay)
        reply.write(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpSink:
    """A running :class:`Provider` (context manager); ``connection()`` is its Airflow connection as JSON."""

    def __init__(self) -> None:
        self.provider = Provider()
        self.thread = threading.Thread(
            target=self.provider.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Provider:
        self.thread.start()
        return self.provider

    def __exit__(self, *exc_info: object) -> None:
        self.provider.shutdown()
        self.provider.server_close()
