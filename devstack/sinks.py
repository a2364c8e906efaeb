"""Local message sinks for the demo: an SMTP server that keeps each mail as a ``.eml`` file (the SMS
and push providers are simulators of their own protocols: ``devstack.simulators``).

The mail sink also refuses some recipients as a real receiving server would, so that the demo shows
what happens after a refusal: a local part starting with ``bounce-`` gets ``550 5.1.1 ... User
unknown`` at ``RCPT`` (a hard bounce: the event ends Delivery failed and the address is quarantined),
one starting with ``softbounce-`` gets ``452 4.2.2 Mailbox full`` (a soft one: retried, then counted).
One starting with ``dsnbounce-`` is accepted (``250``, as a relay accepts what it cannot yet deliver)
and then bounced the way Postfix's bounce daemon does it: an RFC 3464 delivery status notification
goes to the message's envelope sender (the signed VERP return path), here a file of the bounce
mailbox directory that ``devstack.pop3`` serves, where ``bounceProcessing`` reads it.

They run in threads of the demo process (so they stop with it) and stand in for a real provider
through the same Airflow connection a deployment would use (``mc_smtp``).
The mail sink counts what it accepted and refused (``counts``: the demo's status line); the line per message
goes to the ``devstack.sinks`` logger, which the demo sends to a file rather than the console.
Their servers (``SmtpServer``, ``HttpServer``) take any handler: the benchmarks' sinks are the same
servers with handlers that count or add a provider's latency.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import socket
import threading
from dataclasses import dataclass
from email.utils import format_datetime, localtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

SENDER = "messagecenter@example.com"
HARD_BOUNCE_PREFIX = "bounce-"  # local parts the mail sink refuses for good (550 5.1.1 user unknown)
SOFT_BOUNCE_PREFIX = "softbounce-"  # local parts it refuses for now (452 4.2.2 mailbox full)
DSN_BOUNCE_PREFIX = "dsnbounce-"  # local parts it accepts, then bounces with a DSN to the envelope sender
REPORTING_MTA = "mx.example.com"  # the name the sink's notifications give as their MTA


def refusal(address: str) -> str | None:
    """The SMTP answer the mail sink gives at ``RCPT TO`` for ``address``, or ``None`` to accept it."""
    local_part = address.rpartition("@")[0].lower()
    if local_part.startswith(HARD_BOUNCE_PREFIX):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    if local_part.startswith(SOFT_BOUNCE_PREFIX):
        return "452 4.2.2 Mailbox full"
    return None


def bounced_later(address: str) -> bool:
    """Whether the mail sink accepts ``address`` and then bounces it with a DSN (``dsnbounce-*``)."""
    return address.rpartition("@")[0].lower().startswith(DSN_BOUNCE_PREFIX)


class MailFolder:
    """A directory of ``<n>.eml`` files, numbered on from the files already there (so a second demo
    run keeps the first run's), each written whole under another name then renamed: a reader (the
    POP3 server) never sees half a mail."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.stem) for p in directory.glob("*.eml") if p.stem.isdigit()]
        self._numbers = itertools.count(max(numbers, default=0) + 1)
        self._lock = threading.Lock()

    def add(self, data: bytes) -> Path:
        with self._lock:
            path = self.directory / f"{next(self._numbers)}.eml"
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(data)
        partial.rename(path)
        return path


def _header_section(message: bytes) -> bytes:
    """The header lines of a raw message, CRLF-terminated, without the blank line that ends them."""
    lines = re.split(rb"\r?\n", message)
    end = lines.index(b"") if b"" in lines else len(lines)
    return b"".join(line + b"\r\n" for line in lines[:end])


def delivery_status_notification(sender: str, recipients: list[str], original: bytes) -> bytes:
    """The RFC 3464 report Postfix's bounce daemon sends ``sender`` when ``recipients`` do not exist:
    ``multipart/report`` with a text part, a ``message/delivery-status`` part (one block per
    recipient: ``Action: failed``, ``Status: 5.1.1`` and the remote server's 550 answer) and the
    original's headers (``text/rfc822-headers``), as it arrives in the bounce mailbox."""
    now = localtime()
    queue_id = secrets.token_hex(5).upper()
    boundary = f"{queue_id}.{int(now.timestamp())}/{REPORTING_MTA}"
    date = format_datetime(now)
    answers = {rcpt: f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown" for rcpt in recipients}
    head = [
        "Return-Path: <>",
        f"X-Original-To: {sender}",
        f"Delivered-To: {sender}",
        f"Received: by {REPORTING_MTA} (Postfix)",
        f"\tid {queue_id}; {date}",
        f"Date: {date}",
        f"From: Mail Delivery System <MAILER-DAEMON@{REPORTING_MTA}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"To: {sender}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        f"Message-Id: <{now:%Y%m%d%H%M%S}.{queue_id}@{REPORTING_MTA}>",
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {REPORTING_MTA}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
        "",
        "                   The mail system",
        "",
        *(
            f"<{rcpt}>: host {rcpt.rpartition('@')[2]} said: {answer} (in reply to RCPT TO command)"
            for rcpt, answer in answers.items()
        ),
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {REPORTING_MTA}",
        f"X-Postfix-Queue-ID: {queue_id}",
        f"X-Postfix-Sender: rfc822; {sender}",
        f"Arrival-Date: {date}",
    ]
    for rcpt, answer in answers.items():
        head += [
            "",
            f"Final-Recipient: rfc822; {rcpt}",
            f"Original-Recipient: rfc822;{rcpt}",
            "Action: failed",
            "Status: 5.1.1",
            f"Remote-MTA: dns; {rcpt.rpartition('@')[2]}",
            f"Diagnostic-Code: smtp; {answer}",
        ]
    head += [
        "",
        f"--{boundary}",
        "Content-Description: Undelivered Message Headers",
        "Content-Type: text/rfc822-headers",
        "",
        f"Return-Path: <{sender}>",
    ]
    tail = f"\r\n--{boundary}--\r\n"
    return "\r\n".join(head).encode() + b"\r\n" + _header_section(original) + tail.encode()


class _MailWriter:
    """aiosmtpd handler: each accepted message becomes ``<directory>/<n>.eml`` (see
    :class:`MailFolder`), with the ``Return-Path`` a delivering server adds (the envelope sender:
    where a bounce would go). Recipients named by :func:`refusal` are refused at ``RCPT TO``; those
    :func:`bounced_later` names are accepted, then get a DSN in ``bounces`` (when given)."""

    def __init__(self, directory: Path, bounces: Path | None = None) -> None:
        self.mail = MailFolder(directory)
        self.bounces = MailFolder(bounces) if bounces is not None else None
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
        content = envelope.original_content or envelope.content
        bounced = [rcpt for rcpt in envelope.rcpt_tos if bounced_later(rcpt)]
        delivered = [rcpt for rcpt in envelope.rcpt_tos if not bounced_later(rcpt)]
        with self._lock:
            self.counts["accepted"] += 1
        if delivered:
            return_path = f"Return-Path: <{envelope.mail_from or ''}>\r\n".encode()
            path = self.mail.add(return_path + content)
            log.info("mail to %s -> %s", ", ".join(delivered), path)
        if bounced:
            self._bounce((envelope.mail_from or "").strip("<> "), bounced, content)  # "<>": null sender
        return "250 OK"

    def _bounce(self, sender: str, recipients: list[str], content: bytes) -> None:
        if not sender or self.bounces is None:  # a bounce never bounces: the null sender gets nothing
            log.info("mail to %s dropped: no bounce mailbox or a null sender", ", ".join(recipients))
            return
        path = self.bounces.add(delivery_status_notification(sender, recipients, content))
        log.info("mail to %s bounced: a DSN to %s -> %s", ", ".join(recipients), sender, path)


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
    refuses ``bounce-*`` (550) and ``softbounce-*`` (452) recipients, and accepts ``dsnbounce-*``
    ones only to send their envelope sender a delivery status notification into ``bounces``.

    :param directory: where ``<n>.eml`` files go.
    :param port: listening port (0: a free one).
    :param bounces: the bounce mailbox directory (``<n>.eml`` DSNs); ``None``: ``dsnbounce-*`` mail
        is accepted and dropped.
    """

    def __init__(self, directory: Path, port: int = 0, *, bounces: Path | None = None) -> None:
        self.writer = _MailWriter(directory, bounces)
        super().__init__(self.writer, port)
        self.directory = directory
        self.bounces = bounces

    @property
    def counts(self) -> dict[str, int]:
        """Mails accepted (written) and recipients refused since this sink started."""
        return dict(self.writer.counts)


@dataclass
class Reply:
    """An HTTP answer a fake provider gives (after ``delay`` seconds) instead of its own."""

    status: int = 200
    body: str = '{"id": "m-1"}'
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()

    def write(self, handler: BaseHTTPRequestHandler) -> None:
        """Send this answer (JSON body, its headers) on ``handler``'s connection."""
        data = self.body.encode()
        handler.send_response(self.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in self.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


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


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
