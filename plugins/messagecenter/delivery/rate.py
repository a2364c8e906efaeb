"""A provider's rate limit, honoured across every worker of an execution instance.

Providers limit per account (an SMS API at 50 messages per second, an SMTP relay at 20), not per
process, so the limit lives in the execution database: each worker reserves a window of the next
``n`` send slots (one short statement, autocommit, on a connection of its own) and spaces its
messages inside it. Windows are about a tenth of a second of traffic, so the database sees ten
statements per second per worker, whatever the rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from messagecenter.db.queries import fetch_value, query

log = logging.getLogger(__name__)


class RateLimiter:
    """Let :meth:`wait_turn` return at most ``rate`` times per second, across processes.

    :param connect: opens an autocommit connection to the execution database (called once).
    :param provider: the provider's name (its connection id): one limit per provider.
    :param rate: messages per second.
    :param window_seconds: how much traffic one reservation covers.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        provider: str,
        rate: float,
        *,
        window_seconds: float = 0.1,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.provider = provider
        self.rate = rate
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._batch = max(1, round(rate * window_seconds))
        self._slots: list[float] = []  # monotonic times of the slots reserved and not used yet

    def wait_turn(self) -> None:
        """Sleep until this process's next reserved slot (reserving a window when none is left)."""
        if not self._slots:
            self._reserve()
        slot = self._slots.pop(0)
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _reserve(self) -> None:
        if self._conn is None:
            self._conn = self._connect()
        params = {"provider": self.provider, "n": self._batch, "rate": self.rate}
        start_in = float(fetch_value(self._conn, query("reserve_send_slots"), params))
        start = time.monotonic() + max(start_in, 0.0)
        self._slots = [start + i / self.rate for i in range(self._batch)]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
