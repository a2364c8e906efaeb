"""Local message sinks for the demo: an SMTP server that keeps each mail as a ``.eml`` file, and an
HTTP server that plays the SMS and push providers and appends each JSON body it receives to a log.

The mail sink also refuses some recipients as a real receiving server would, so that the demo shows
what happens after a refusal: a local part starting with ``bounce-`` gets ``550 5.1.1 ... User
unknown`` at ``RCPT`` (a hard bounce: the event ends Delivery failed and the address is quarantined),
one starting with ``softbounce-`` gets ``452 4.2.2 Mailbox full`` (a soft one: retried, then counted).

They run in threads of the demo process (so they stop with it) and stand in for real providers
through the same Airflow connections a deployment would use (``mc_smtp``, ``mc_sms``, ``mc_push``).
Each counts what it accepted and refused (``counts``: the demo's status line); the line per message
goes to the ``devstack.sinks`` logger, which the demo sends to a file rather than the console.
Their servers (``SmtpServer``, ``HttpServer``) take any handler: the benchmarks' sinks are the same
servers with handlers that count or add a provider's latency.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

SENDER = "messagecenter@example.com"
HARD_BOUNCE_PREFIX = "bounce-"  # local parts the mail sink refuses for good (550 5.1.1 user unknown)
SOFT_BOUNCE_PREFIX = "softbounce-"  # local parts it refuses for now (452 4.2.2 mailbox full)


def refusal(address: str) -> str | None:
    """The SMTP answer the mail sink gives at ``RCPT TO`` for ``address``, or ``None`` to accept it."""
    local_part = address.rpartition("@")[0].lower()
    if local_part.startswith(HARD_BOUNCE_PREFIX):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    if local_part.startswith(SOFT_BOUNCE_PREFIX):
        return "452 4.2.2 Mailbox full"
    return None


class _MailWriter:
    """aiosmtpd handler: each accepted message becomes ``<directory>/<n>.eml`` (numbering goes on
    from the files already there, so a second demo run keeps the first run's mail), with the
    ``Return-Path`` a delivering server adds (the envelope sender: where a bounce would go).
    Recipients named by :func:`refusal` are refused at ``RCPT TO``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.stem) for p in directory.glob("*.eml") if p.stem.isdigit()]
        self._numbers = itertools.count(max(numbers, default=0) + 1)
        self._lock = threading.Lock()
        self.counts = {"accepted": 0, "refused": 0}  # this run's messages, for the demo's status line

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refused = refusal(address)
        if refused is not None:
            log.info("mail to %s refused: %s", address, refused)
            with self._lock:
                self.counts["refused"] += 1
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            number = next(self._numbers)
            self.counts["accepted"] += 1
        path = self.directory / f"{number}.eml"
        partial = path.with_suffix(".eml.part")  # renamed when complete: a reader never sees half a mail
        return_path = f"Return-Path: <{envelope.mail_from or ''}>\r\n".encode()
        partial.write_bytes(return_path + (envelope.original_content or envelope.content))
        partial.rename(path)
        log.info("mail to %s -> %s", ", ".join(envelope.rcpt_tos), path)
        return "250 OK"


class SmtpServer:
    """An SMTP server on ``127.0.0.1:port`` (aiosmtpd, in a thread of this process) handing every
    message to ``handler``; the mail sink below and the benchmarks' sinks differ by their handler only.

    :param handler: an aiosmtpd handler (``async handle_DATA(server, session, envelope) -> str``).
    :param port: listening port (0: a free one).
    """

    def __init__(self, handler: object, port: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self.handler = handler
        self.controller = Controller(
            handler, hostname="127.0.0.1", port=port or free_port(), ready_timeout=10
        )

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def connection(self) -> dict[str, Any]:
        """The ``mc_smtp`` connection (JSON form) that sends here."""
        return {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"from_email": SENDER, "disable_ssl": True, "disable_tls": True, "timeout": 10},
        }


class MailSink(SmtpServer):
    """An SMTP server on ``127.0.0.1:port`` writing every mail it accepts to ``directory``; it
    refuses ``bounce-*`` (550) and ``softbounce-*`` (452) recipients.

    :param directory: where ``<n>.eml`` files go.
    :param port: listening port (0: a free one).
    """

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.writer = _MailWriter(directory)
        super().__init__(self.writer, port)
        self.directory = directory

    @property
    def counts(self) -> dict[str, int]:
        """Mails accepted (written) and recipients refused since this sink started."""
        return dict(self.writer.counts)


class _ProviderHandler(BaseHTTPRequestHandler):
    server: ProviderSink

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        name = self.path.strip("/").split("/")[0]
        if name not in self.server.logs:
            self._answer(404, {"error": f"unknown endpoint {self.path}"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._answer(400, {"error": "body is not JSON"})
            return
        self.server.record(name, body)
        self._answer(200, {"id": f"{name}-{next(self.server.ids)}"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # record() logs what matters


class HttpServer(ThreadingHTTPServer):
    """An HTTP server on ``127.0.0.1:port`` answering with ``handler`` in threads of this process.

    Use as a context manager; ``connection(name)`` is the Airflow HTTP connection of endpoint ``/name``.
    """

    daemon_threads = True

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], port: int = 0, *, poll_interval: float = 0.2
    ) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def connection(self, name: str) -> dict[str, Any]:
        """The HTTP connection (JSON form) of endpoint ``name`` (``sms`` or ``push``)."""
        return {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"endpoint": f"/{name}"},
        }


class ProviderSink(HttpServer):
    """A fake SMS / push provider on ``127.0.0.1:port``: ``POST /sms`` and ``POST /push`` append the
    JSON body as one line to ``<directory>/sms.log`` / ``push.log`` and answer ``200 {"id": ...}``.

    Use as a context manager; ``connection(name)`` is the ``mc_sms`` / ``mc_push`` connection.
    """

    def __init__(self, directory: Path, port: int = 0) -> None:
        super().__init__(_ProviderHandler, port)
        directory.mkdir(parents=True, exist_ok=True)
        self.logs = {"sms": directory / "sms.log", "push": directory / "push.log"}
        self.ids = itertools.count(1)
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(self.logs, 0)  # requests received since this sink started

    def record(self, name: str, body: Any) -> None:
        with self._lock, self.logs[name].open("a") as out:
            out.write(json.dumps(body) + "\n")
            self.counts[name] += 1
        log.info("%s -> %s", name, self.logs[name])


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
