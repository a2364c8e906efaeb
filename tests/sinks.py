"""Real message sinks for tests: an SMTP server (aiosmtpd, in process) and an HTTP provider.

Both record what they receive and answer from a programmable queue of replies, so a test can make
the transport see a transient or a permanent error on the wire.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

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


class HttpSink:
    """A JSON HTTP provider (SMS / push) on a free loopback port, recording every request body."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: deque[tuple[int, dict[str, Any]]] = deque()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status, answer = (
                    sink.replies.popleft() if sink.replies else (200, {"id": f"m-{len(sink.requests)}"})
                )
                if status < 300:
                    sink.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def connection(self, endpoint: str = "/send") -> str:
        return json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.port,
                "schema": "http",
                "extra": {"endpoint": endpoint},
            }
        )
