"""What the execution steps pass along: shard descriptors (XCom-sized) and counts (task logs)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from messagecenter.core.types import Queue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """A slice of one queue's work, small enough for XCom: never the events themselves.

    ``batch_id`` is the split run that claimed the events (None for a retry shard, which delivers
    whatever is due for its event type and channel); ``min_id``..``max_id`` bounds the ids.
    """

    queue: Queue
    event_type: str
    channel: int
    batch_id: int | None
    min_id: int
    max_id: int
    count: int

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, data: dict[str, Any] | Shard) -> Shard:
        return data if isinstance(data, Shard) else cls(**data)


@dataclass
class Counts:
    """What a step did, for the task log and the benchmarks."""

    claimed: int = 0
    linked: int = 0
    not_taken: int = 0
    sent: int = 0
    ignored: int = 0
    failed: int = 0
    retried: int = 0
    copied: int = 0
    expired: int = 0
    started: float = field(default_factory=time.monotonic, repr=False)

    def add(self, other: Counts) -> None:
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNTERS}

    @property
    def delivered(self) -> int:
        """Events this step finished or rescheduled (what a real-time pass looks at)."""
        return self.sent + self.ignored + self.failed + self.retried

    def log(self, what: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        handled = self.claimed + self.delivered + self.copied + self.expired
        log.info(
            "%s: claimed %s, linked %s, not taken into account %s, sent %s, ignored %s, failed %s, "
            "retried %s, status copied %s, expired %s in %.2f s (%.0f events/s)",
            what,
            self.claimed,
            self.linked,
            self.not_taken,
            self.sent,
            self.ignored,
            self.failed,
            self.retried,
            self.copied,
            self.expired,
            elapsed,
            handled / elapsed,
        )


_COUNTERS = tuple(f.name for f in fields(Counts) if f.name != "started")
