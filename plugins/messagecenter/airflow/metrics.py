"""Message Center's Airflow metrics: sent to whatever ``[metrics]`` configures (StatsD, OpenTelemetry).

* ``messagecenter.pending.<queue>`` (gauge): events not yet final, each minute (updateEventsStatus);
* ``messagecenter.sent`` / ``.failed`` / ``.ignored`` (counters, tag ``queue``): delivery results,
  after each delivery task and each real-time drain;
* ``messagecenter.archiving_lag.<instance>`` (gauge, seconds): now - end of the archived period,
  after each archiving run;
* ``messagecenter.bounce_rate`` and ``messagecenter.complaint_rate`` (gauges, percent, over
  ``MC_FEEDBACK_WINDOW_SECONDS``) and ``messagecenter.quarantine.<status>`` (gauges: addresses
  ``with_errors``, in ``quarantine``, ``denylisted``), every fifth minute (updateEventsStatus);
* ``messagecenter.feedback.<kind>`` (counters, tag ``source``): feedback applied (``delivered``,
  ``failed``, ``deferred``, ``complaint``, ``unsubscribe``, ``ignored``), counted by :func:`feedback`
  from the ``by_kind`` of each batch the caller applied (only it knows the kinds exactly).

Emitting never fails a task: with metrics off it does nothing; an error is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import ModuleType

from messagecenter.monitoring.indicators import FeedbackRates

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


def feedback_figures(rates: FeedbackRates, quarantine: Mapping[str, int]) -> None:
    """Gauge the bounce and complaint rates (percent) and the addresses per quarantine status."""
    try:
        stats = _stats()
        stats.gauge(f"{PREFIX}.bounce_rate", rates.bounce_rate_percent)
        stats.gauge(f"{PREFIX}.complaint_rate", rates.complaint_rate_percent)
        for status, count in quarantine.items():
            stats.gauge(f"{PREFIX}.quarantine.{status}", count)
    except Exception as exc:
        log.warning("Metrics not sent: %s", exc)


def feedback(source: str, by_kind: Mapping[str, int]) -> None:
    """Count the feedback a batch applied, per kind (a bounce mailbox run, a webhook, re-matched receipts)."""
    try:
        stats = _stats()
        for kind, count in by_kind.items():
            if count:
                stats.incr(f"{PREFIX}.feedback.{kind}", count, tags={"source": source})
    except Exception as exc:
        log.warning("Metrics not sent: %s", exc)
