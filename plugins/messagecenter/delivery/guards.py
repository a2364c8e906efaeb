"""What keeps a failing provider from holding a worker: a circuit breaker and a per-send deadline.

A provider that is down costs a connection timeout per message, and one that trickles its answer
a byte at a time defeats every per-read timeout. The breaker stops a worker from trying a provider
that failed ``threshold`` times in a row (its events are retried later, counted as transient); the
watchdog ends a send that runs past its overall deadline by shutting its socket down.
:class:`ProviderGuards` holds, per channel, the provider's breaker and its rate limiter.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from messagecenter.delivery.base import Outcome, TransportFactory
from messagecenter.delivery.rate import RateLimiter


class CircuitBreaker:
    """Open after ``threshold`` consecutive transient failures, or at once when :meth:`trip` says the
    provider refuses every message; half open after ``cooldown`` seconds.

    While open, :meth:`allow` is false: the caller answers TRANSIENT without calling the provider.
    After the cooldown one message is let through; if it fails the circuit opens again at once.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()
        self.reason = f"{self.threshold} transient errors in a row"  # why it opened last

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    @property
    def remaining(self) -> float:
        """Seconds until the circuit half opens (0 when closed)."""
        return max(self._open_until - time.monotonic(), 0.0)

    def allow(self) -> bool:
        return not self.is_open

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            if outcome is Outcome.TRANSIENT:
                self._failures += 1
                if self._failures >= self.threshold:
                    self._open(f"{self.threshold} transient errors in a row")
            else:
                self._failures = 0
                self._open_until = 0.0

    def trip(self, reason: str) -> None:
        """Open now: the provider refused something every message would be refused for (the
        account's credentials), so the next ones would only fail the same way."""
        with self._lock:
            self._open(reason)

    def _open(self, reason: str) -> None:
        self._open_until = time.monotonic() + self.cooldown
        self._failures = self.threshold - 1  # half open: one more failure reopens it
        self.reason = reason


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(provider: str, *, threshold: int = 5, cooldown: float = 30.0) -> CircuitBreaker:
    """The breaker of ``provider`` in this process (shared by every chunk a worker delivers)."""
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(provider)
        if breaker is None or (breaker.threshold, breaker.cooldown) != (max(1, threshold), cooldown):
            breaker = _BREAKERS[provider] = CircuitBreaker(threshold, cooldown)
        return breaker


class SocketWatchdog:
    """Shut a blocking socket down when the operation on it passes its deadline.

    One daemon thread per watchdog; arming and disarming cost two attribute writes, so it can
    guard every message of a chunk. ``shutdown`` wakes a thread blocked in ``recv`` or ``send``,
    which then sees an ``OSError`` (or an empty read) and gives up on that connection.
    """

    def __init__(self, poll_seconds: float = 0.05) -> None:
        self._poll = poll_seconds
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._deadline = 0.0
        self.fired = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mc-send-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def guard(self, sock: socket.socket | None, seconds: float) -> Iterator[None]:
        """Run the block with ``sock`` shut down if it lasts longer than ``seconds``."""
        with self._lock:
            self._sock, self._deadline, self.fired = sock, time.monotonic() + seconds, False
        try:
            yield
        finally:
            with self._lock:
                self._sock = None

    def close(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self._poll):
            with self._lock:
                if self._sock is not None and time.monotonic() >= self._deadline:
                    with contextlib.suppress(OSError):
                        self._sock.shutdown(socket.SHUT_RDWR)
                    self._sock, self.fired = None, True


def clear_breakers() -> None:
    """Forget every provider's breaker (a new worker process starts with none)."""
    with _BREAKERS_LOCK:
        _BREAKERS.clear()


class ProviderGuards:
    """Each provider's circuit breaker and, when its transport sets ``max_rate``, its rate limiter
    (with a connection of its own, closed at the end). One per delivery task, or per real-time
    drain: its passes then share one limiter connection and its reserved slots.

    :param transport_for: the transport of a channel (only its ``name`` and ``max_rate`` are read).
    :param breaker_threshold: consecutive transient failures that open a provider's breaker.
    :param breaker_cooldown: seconds an open breaker waits before it lets one message through.
    """

    def __init__(
        self, transport_for: TransportFactory, *, breaker_threshold: int, breaker_cooldown: float
    ) -> None:
        self._transport_for = transport_for
        self._breaker_threshold = breaker_threshold
        self._breaker_cooldown = breaker_cooldown
        self._guards: dict[int, tuple[CircuitBreaker, RateLimiter | None]] = {}

    def guards(
        self, conn: psycopg.Connection[Any], channel: int
    ) -> tuple[CircuitBreaker, RateLimiter | None]:
        """The breaker and the rate limiter (or ``None``) of ``channel``'s provider; a limiter
        connects to the database of ``conn``."""
        if channel not in self._guards:
            transport = self._transport_for(channel)  # not opened: only its settings are read
            breaker = breaker_for(
                transport.name, threshold=self._breaker_threshold, cooldown=self._breaker_cooldown
            )
            limiter = None
            if transport.max_rate:
                dsn, password = conn.info.dsn, conn.info.password

                def connect() -> psycopg.Connection[Any]:
                    return psycopg.connect(dsn, password=password, autocommit=True)

                limiter = RateLimiter(connect, transport.name, float(transport.max_rate))
            self._guards[channel] = (breaker, limiter)
        return self._guards[channel]

    def close(self) -> None:
        for _, limiter in self._guards.values():
            if limiter is not None:
                limiter.close()

    def __enter__(self) -> ProviderGuards:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
