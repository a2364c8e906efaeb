"""Network probes of the delivery providers: these open real connections (the doctor's only ones).

Each probe returns ``None`` when the provider answers, else what went wrong, in a sentence the
doctor puts in its finding. Nothing is sent: the SMTP probe says EHLO and quits, the HTTP probe
only opens a TCP connection.
"""

from __future__ import annotations

import smtplib
import socket
from urllib.parse import urlsplit


def probe_smtp(host: str, port: int, timeout: float = 5.0) -> str | None:
    """Connect to the SMTP server and say EHLO."""
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            code, answer = client.ehlo()
    except (OSError, smtplib.SMTPException) as exc:
        return f"SMTP server {host}:{port} does not answer ({exc})"
    if not 200 <= code < 300:
        return f"SMTP server {host}:{port} refused EHLO ({code} {answer.decode(errors='replace')})"
    return None


def probe_http(url: str, timeout: float = 5.0) -> str | None:
    """Open a TCP connection to the provider's host and port (no request is sent); ``url`` is an
    ``http``, ``https`` or ``smpp`` URL (the SMSC's host and port)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return f"no host in {url!r}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"{parts.hostname}:{port} does not answer ({exc})"
    return None
