"""Many messages in flight at once: a bounded pool of open transports, one per sending thread.

Delivery is network-bound (a relay answers in tens of milliseconds, an SMS API in hundreds), so a
chunk keeps up to ``max_connections`` messages in flight. Each transport is used by one thread at
a time and opened only when needed: a chunk of three messages opens at most three connections.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

from messagecenter.delivery.base import OutgoingMessage, SendResult, Transport


def concurrency_of(transport: Transport) -> int:
    """How many messages a chunk may have in flight on this provider (its ``max_connections``)."""
    return max(1, transport.max_connections)


class TransportPool:
    """At most ``size`` open transports, each lent to one sender at a time.

    :param first: a transport, not yet opened (it gives the pool its size and is opened first).
    :param make: builds another one, not yet opened.
    """

    def __init__(self, first: Transport, make: Callable[[], Transport]) -> None:
        self.size = concurrency_of(first)
        self._first: Transport | None = first
        self._make = make
        self._idle: queue.SimpleQueue[Transport] = queue.SimpleQueue()
        self._open: list[Transport] = []
        self._lock = threading.Lock()

    @property
    def opened(self) -> int:
        """Transports opened so far (never more than :attr:`size`)."""
        return len(self._open)

    def send(self, message: OutgoingMessage) -> SendResult:
        if self.size == 1 and self._open:  # one connection, one caller: no lending needed
            return self._open[0].send(message)
        transport = self._checkout()
        try:
            return transport.send(message)
        finally:
            self._idle.put(transport)

    def _checkout(self) -> Transport:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._open) < self.size:
                transport, self._first = self._first or self._make(), None
                transport.__enter__()
                self._open.append(transport)
                return transport
        return self._idle.get()  # every transport is busy: wait for one

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            opened, self._open = self._open, []
        for transport in opened:
            transport.__exit__(None, None, None)
