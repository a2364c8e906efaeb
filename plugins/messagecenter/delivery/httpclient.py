"""One kept-alive HTTP connection for a push transport, each request bounded by an overall deadline.

httpcore's synchronous connection pool (the engine under httpx), HTTP/1.1 or HTTP/2, without an
event loop: a request costs a fraction of the CPU an asyncio client spends, and a delivery chunk
sends thousands. Per-operation timeouts bound connect, read and write; the deadline bounds the
whole request, answer included, so a provider trickling its answer cannot stretch it: a single
watchdog thread of the process shuts the connection's socket down when a request runs past its
deadline, which wakes the blocked read.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpcore

from messagecenter.core.providers import HTTP_LIMITS

# What a request may raise when its connection cannot be opened or is lost (besides the timeouts).
CONNECTION_FAILED = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError)


class DeadlineExceeded(TimeoutError):
    """The request ran past its overall deadline (its connection was shut down)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Watchdog:
    """The process's deadline thread: every ``poll`` seconds, expires the clients past deadline."""

    def __init__(self, poll: float = 0.05) -> None:
        self._poll = poll
        self._armed: dict[DeadlineClient, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, client: DeadlineClient, deadline_at: float) -> None:
        with self._lock:
            self._armed[client] = deadline_at
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mc-http-deadline", daemon=True)
                self._thread.start()

    def disarm(self, client: DeadlineClient) -> None:
        with self._lock:
            self._armed.pop(client, None)

    def _run(self) -> None:
        while True:
            time.sleep(self._poll)
            now = time.monotonic()
            with self._lock:
                late = [client for client, at in self._armed.items() if now >= at]
                for client in late:
                    del self._armed[client]
            for client in late:
                client.expire()


_WATCHDOG = _Watchdog()


class _Stream(httpcore.NetworkStream):
    """A socket stream that tells its client the socket it runs on (the TLS one after the handshake)."""

    def __init__(self, stream: httpcore.NetworkStream, client: DeadlineClient) -> None:
        self._stream = stream
        self._client = client
        client.socket_is(stream.get_extra_info("socket"))

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._client)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.SyncBackend):
    """httpcore's socket backend, its streams watched by a :class:`DeadlineClient`."""

    def __init__(self, client: DeadlineClient) -> None:
        self._client = client

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(super().connect_tcp(host, port, timeout, local_address, socket_options), self._client)


class DeadlineClient:
    """One kept-alive connection (opened when first needed, reopened after the server closes it).

    :param http2: HTTP/2 (over TLS: ALPN), else HTTP/1.1.
    :param timeout: seconds allowed for each of connect, write, read.
    :param deadline: seconds allowed for a whole request, answer included.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, http2: bool, timeout: float, deadline: float) -> None:
        self.deadline = deadline
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._expired = False
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            http1=not http2,
            http2=http2,
            network_backend=_Backend(self),
        )

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Send one request and read its whole answer.

        :raises DeadlineExceeded: not answered within the deadline.
        :raises httpcore.TimeoutException: connect, read or write took longer than the timeout.
        :raises httpcore.NetworkError, httpcore.ProtocolError: the connection failed or was lost.
        """
        authority = urllib.parse.urlsplit(url).netloc
        sent = [("Host", authority), ("Content-Length", str(len(body))), *headers.items()]
        with self._lock:
            self._expired = False
        _WATCHDOG.arm(self, time.monotonic() + self.deadline)
        try:
            response = self._pool.request(
                method, url, headers=sent, content=body, extensions={"timeout": self._timeouts}
            )
        except Exception as exc:
            if self._expired:
                raise DeadlineExceeded(f"no complete answer within {self.deadline:g} s") from exc
            raise
        finally:
            _WATCHDOG.disarm(self)
        if self._expired:  # answered as the watchdog fired: the connection is gone, the answer is not
            self._expired = False
        return Answer(
            response.status,
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers},
            response.content,
        )

    def socket_is(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socket = sock

    def expire(self) -> None:
        """The watchdog's call: shut the socket down, which wakes a blocked read or write."""
        with self._lock:
            self._expired = True
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        _WATCHDOG.disarm(self)
        self._pool.close()


class HttpLimits:
    """The limits every HTTP transport has (the generic and SMS APIs, FCM, APNs).

    :param name: the provider's name in logs and errors (its connection id).
    :param timeout: seconds allowed for each of connect, write, read.
    :param deadline: seconds allowed for a whole request, answer included.
    :param max_connections: how many of these a delivery chunk may open at once (its concurrency).
    :param max_rate: the provider's limit in messages per second, across all workers (or none).
    """

    def __init__(
        self,
        *,
        name: str,
        timeout: float = 10.0,
        deadline: float = HTTP_LIMITS.deadline,
        max_connections: int = HTTP_LIMITS.max_connections,
        max_rate: float | None = None,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.deadline = deadline
        self.max_connections = max_connections
        self.max_rate = max_rate
        self._error: str | None = None  # why the chunk's sends fail without trying (None: they try)


class DeadlineTransport(HttpLimits):
    """What the push transports share: their limits (:class:`HttpLimits`), and one
    :class:`DeadlineClient` per chunk."""

    def __init__(self, **limits: Any) -> None:
        super().__init__(**limits)
        self._client: DeadlineClient | None = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the chunk's client (the transport may be opened again for the next chunk)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
