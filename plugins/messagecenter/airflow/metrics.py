"""Message Center's Airflow metrics: sent to whatever ``[metrics]`` configures (StatsD, OpenTelemetry).

* ``messagecenter.pending.<queue>`` (gauge): events not yet final, each minute (updateEventsStatus);
* ``messagecenter.sent`` / ``.failed`` / ``.ignored`` (counters, tag ``queue``): delivery results,
  after each delivery task and each real-time drain;
* ``messagecenter.archiving_lag.<instance>`` (gauge, seconds): now - end of the archived period,
  after each archiving run.

Emitting never fails a task: with metrics off it does nothing; an error is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import ModuleType

log = logging.getLogger(__name__)
PREFIX = "messagecenter"


def _stats() -> ModuleType:
    from airflow.sdk.observability import stats

    return stats


def pending(counts: Mapping[str, int]) -> None:
    """Gauge the events waiting in each queue."""
    try:
        stats = _stats()
        for queue, count in counts.items():
            stats.gauge(f"{PREFIX}.pending.{queue}", count)
    except Exception as exc:
        log.warning("Metrics not sent: %s", exc)


def delivered(queue: str, *, sent: int, failed: int, ignored: int) -> None:
    """Count the messages a delivery task or drain sent, failed and ignored."""
    try:
        stats = _stats()
        for name, count in (("sent", sent), ("failed", failed), ("ignored", ignored)):
            if count:
                stats.incr(f"{PREFIX}.{name}", count, tags={"queue": queue})
    except Exception as exc:
        log.warning("Metrics not sent: %s", exc)


def archiving_lag(instance: str, seconds: float) -> None:
    """Gauge how far behind an instance's archive is."""
    try:
        _stats().gauge(f"{PREFIX}.archiving_lag.{instance}", seconds)
    except Exception as exc:
        log.warning("Metrics not sent: %s", exc)
