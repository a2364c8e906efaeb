"""Local sinks of the benchmarks: the dev stack's SMTP and HTTP servers with handlers that count
what arrives, or answer after a provider's latency and note when each message arrived."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from devstack.sinks import HttpServer, SmtpServer

__all__ = ["Arrivals", "CountingSmtp", "LatencyHttpSink", "LatencySmtp", "SmtpServer"]


class CountingSmtp:
    """aiosmtpd handler: counts accepted messages and answers 250 at once."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
        return "250 OK"


class Arrivals:
    """When each message arrived (monotonic clock of this process), and which event it carried."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.events: list[int] = []

    def add(self, event_id: int) -> None:
        with self.lock:
            self.times.append(time.monotonic())
            self.events.append(event_id)

    def reset(self) -> None:
        with self.lock:
            self.times.clear()
            self.events.clear()

    def rate(self) -> float:
        """Messages per second from the first arrival to the last."""
        times = sorted(self.times)
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


class LatencySmtp:
    """aiosmtpd handler of a relay that answers each message after ``latency`` seconds; the event
    of each (its ``X-MC-Event-Id`` header) goes to ``arrivals``."""

    def __init__(self, latency: float, arrivals: Arrivals) -> None:
        self.latency = latency
        self.arrivals = arrivals

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.latency)
        header = b"X-MC-Event-Id: "
        content = envelope.original_content
        start = content.find(header)
        event_id = int(content[start + len(header) : content.find(b"\r\n", start)]) if start >= 0 else 0
        self.arrivals.add(event_id)
        return "250 OK"


class _LatencyHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as a real provider's
    server: LatencyHttpSink

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        time.sleep(self.server.latency)
        self.server.arrivals.add(int(body.get("event_id", 0)))
        data = b'{"id": "m-1"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LatencyHttpSink(HttpServer):
    """An SMS provider's API that answers each ``POST`` after ``latency`` seconds; the ``event_id``
    of each JSON body goes to ``arrivals``."""

    request_queue_size = 256  # every connection of every worker at once

    def __init__(self, latency: float, arrivals: Arrivals) -> None:
        super().__init__(_LatencyHttpHandler, poll_interval=0.05)
        self.latency = latency
        self.arrivals = arrivals

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its kept-alive connection at the end: expected
