"""What the Message Center page and the doctor measure, each on the database connection it is handed.

Per queue of an execution instance: pending events, their average queue time (how long what is
waiting has waited), the processing time (arrival to final status) and error rate (Failed /
Sent+Ignored+Failed) of the last hour, each with Campaign's alert level (``ok``, ``warning``,
``alert``; thresholds from :class:`~messagecenter.core.settings.AlertLevels`, the real-time and the
batch queue each their own); events per status received in the last hour and day; events per minute
by final status over the last hours (the throughput plot); the template versions it routes to; and
what came back after the send over the feedback window (``MC_FEEDBACK_WINDOW_SECONDS``): the bounce
and complaint rates with their alert levels, the quarantine by status and reason, the texts no rule
qualified, the feedback that found no delivery log. On control: each instance's archiving lag.
Levels are computed here, so they are tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from messagecenter.core.settings import AlertLevels
from messagecenter.core.types import QUEUES, Status
from messagecenter.db.queries import fetch_value, query
from messagecenter.feedback.quarantine import AddressStatus, status_counts

AlertLevel = Literal["ok", "warning", "alert"]
HOUR, DAY = 3600, 86_400
THROUGHPUT_SECONDS = 6 * HOUR
FINAL = (Status.SENT, Status.IGNORED, Status.FAILED, Status.NOT_TAKEN_INTO_ACCOUNT, Status.EXPIRED)
# Addresses the quarantine counts (a Valid row only remembers a release).
QUARANTINE_STATUSES = (AddressStatus.WITH_ERRORS, AddressStatus.QUARANTINE, AddressStatus.DENYLISTED)
TOP_UNQUALIFIED = 10
# Gmail's and Yahoo's requirement of bulk senders: a spam-complaint rate under 0.3 %, whatever
# MC_ALERT_COMPLAINT_RATE says (its default alert level is that line).
MAILBOX_PROVIDERS_COMPLAINT_LINE = 0.3


def alert_level(value: float, levels: tuple[float, float]) -> AlertLevel:
    """``alert`` at or past the second threshold, ``warning`` at or past the first, else ``ok``."""
    warning, alert = levels
    if value >= alert:
        return "alert"
    return "warning" if value >= warning else "ok"


def error_rate_percent(sent: int, ignored: int, failed: int) -> float:
    done = sent + ignored + failed
    return 100.0 * failed / done if done else 0.0


def _metric(value: float, levels: tuple[float, float], digits: int = 2) -> dict[str, Any]:
    return {"value": round(value, digits), "level": alert_level(value, levels), "thresholds": list(levels)}


def queue_levels(alerts: AlertLevels, queue: str) -> dict[str, tuple[float, float]]:
    """The (warning, alert) pairs of one queue's pending count, queue time and processing time.

    Each queue has its own: batch events wait for the next batchEventsProcessing run (up to a
    minute) by design, where real-time events are taken within a second.
    """
    if queue == "batch":
        return {
            "pending": alerts.batch_pending,
            "queue_seconds": alerts.batch_queue_seconds,
            "processing_seconds": alerts.batch_processing_seconds,
        }
    return {
        "pending": alerts.pending,
        "queue_seconds": alerts.queue_seconds,
        "processing_seconds": alerts.processing_seconds,
    }


def queue_metrics(conn: psycopg.Connection[Any], queue: str, alerts: AlertLevels) -> dict[str, Any]:
    """The indicators of one queue, with its alert levels (:func:`queue_levels`)."""
    pending, queue_seconds = conn.execute(query("queue_now", queue)).fetchone() or (0, 0.0)
    processing, sent, ignored, failed = conn.execute(query("queue_last_hour", queue)).fetchone() or (
        0.0,
        0,
        0,
        0,
    )
    levels = queue_levels(alerts, queue)
    return {
        "pending": _metric(pending, levels["pending"], 0),
        "queue_seconds": _metric(queue_seconds, levels["queue_seconds"]),
        "processing_seconds": _metric(processing, levels["processing_seconds"]),
        "error_rate_percent": _metric(error_rate_percent(sent, ignored, failed), alerts.error_rate_percent),
        "last_hour": {"sent": sent, "ignored": ignored, "failed": failed},
    }


def status_counts_since(conn: psycopg.Connection[Any], queue: str, seconds: int) -> dict[str, int]:
    """Events received in the last ``seconds``, per status label (every status, zeros included)."""
    found = dict(conn.execute(query("status_since", queue), {"seconds": seconds}).fetchall())
    return {Status(code).label: int(found.get(code, 0)) for code in Status}


def throughput(conn: psycopg.Connection[Any], seconds: int = THROUGHPUT_SECONDS) -> dict[str, Any]:
    """Events per minute by final status, both queues together, as uPlot data: ``minutes`` (epoch
    seconds, every minute of the window, zeros included) and one series per final status."""
    counts: dict[tuple[int, int], int] = {}
    for queue in QUEUES:
        for minute, status, count in conn.execute(query("throughput", queue), {"seconds": seconds}):
            counts[(minute, status)] = counts.get((minute, status), 0) + count
    now_minute = int(conn.execute(query("database_now")).fetchone()[0].timestamp()) // 60 * 60  # type: ignore[index]
    minutes = list(range(now_minute - seconds + 60, now_minute + 60, 60))
    return {
        "minutes": minutes,
        "series": {
            status.label: [counts.get((minute, int(status)), 0) for minute in minutes] for status in FINAL
        },
    }


def instance_overview(
    conn: psycopg.Connection[Any], alerts: AlertLevels, feedback_window: int = DAY
) -> dict[str, Any]:
    """Everything the page shows of one instance: its queues, and the feedback on what it sent."""
    return {
        "queues": {queue: queue_metrics(conn, queue, alerts) for queue in QUEUES},
        "status_last_hour": {queue: status_counts_since(conn, queue, HOUR) for queue in QUEUES},
        "status_last_day": {queue: status_counts_since(conn, queue, DAY) for queue in QUEUES},
        "throughput": throughput(conn),
        "feedback": feedback_overview(conn, alerts, feedback_window),
    }


def published_template_count(conn: psycopg.Connection[Any]) -> int:
    """Template versions an execution instance routes to."""
    return int(fetch_value(conn, query("count_published_templates")) or 0)


def archive_lags(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """Control: per instance, now minus the end of its archived period, in seconds."""
    return {instance: lag for instance, _until, lag in conn.execute(query("archive_lags")).fetchall()}


# --- Delivery feedback ---------------------------------------------------------------------------------


def rate_percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


@dataclass(frozen=True)
class FeedbackRates:
    """Over a window: delivery logs of messages sent, those that failed after the send (a bounce, a
    failed receipt) and those whose recipient complained."""

    sent: int
    bounced: int
    complained: int

    @property
    def bounce_rate_percent(self) -> float:
        return rate_percent(self.bounced, self.sent)

    @property
    def complaint_rate_percent(self) -> float:
        return rate_percent(self.complained, self.sent)


def feedback_rates(conn: psycopg.Connection[Any], seconds: int) -> FeedbackRates:
    """What came back of the messages sent in the last ``seconds``."""
    row = conn.execute(query("feedback_rates"), {"seconds": seconds}).fetchone() or (0, 0, 0)
    return FeedbackRates(*(int(n) for n in row))


def quarantine_summary(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Addresses per quarantine status (``with_errors``, ``quarantine``, ``denylisted``; zeros
    included), and one row per failure reason with its addresses per status, the largest first."""
    counts = status_counts(conn)
    names = [s.api_name for s in QUARANTINE_STATUSES]
    totals = {name: sum(counts.get(name, {}).values()) for name in names}
    per_reason = {
        reason: {name: counts.get(name, {}).get(reason, 0) for name in names}
        for reason in {r for by_reason in counts.values() for r in by_reason}
    }
    ordered = sorted(per_reason.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    return {"totals": totals, "by_reason": [{"reason": reason} | row for reason, row in ordered]}


def unqualified_since(
    conn: psycopg.Connection[Any], seconds: int, limit: int = TOP_UNQUALIFIED
) -> tuple[int, list[dict[str, Any]]]:
    """Texts no rule qualified seen in the last ``seconds``: how many, and the ``limit`` most frequent
    (``text`` is the normalised form a rule matches, ``example`` the first text received)."""
    rows = conn.execute(query("unqualified_feedback_since"), {"seconds": seconds, "limit": limit}).fetchall()
    top = [
        {"text": key, "example": example, "occurrences": n, "last_seen": seen.isoformat()}
        for key, example, n, seen, _total in rows
    ]
    return (int(rows[0][4]) if rows else 0), top


def unmatched_feedback_count(conn: psycopg.Connection[Any]) -> int:
    """Feedback kept because no delivery log was found for it (yet)."""
    return int(fetch_value(conn, query("count_unmatched_feedback")) or 0)


def feedback_overview(
    conn: psycopg.Connection[Any], alerts: AlertLevels, window_seconds: int
) -> dict[str, Any]:
    """The page's "Delivery feedback" block of one instance (the doctor reads the same figures)."""
    rates = feedback_rates(conn, window_seconds)
    unqualified, top = unqualified_since(conn, window_seconds)
    return {
        "window_seconds": window_seconds,
        "sent": rates.sent,
        "bounced": rates.bounced,
        "complained": rates.complained,
        "bounce_rate_percent": _metric(rates.bounce_rate_percent, alerts.bounce_rate_percent),
        "complaint_rate_percent": _metric(rates.complaint_rate_percent, alerts.complaint_rate_percent, 3),
        "complaint_line_percent": MAILBOX_PROVIDERS_COMPLAINT_LINE,
        "quarantine": quarantine_summary(conn),
        "unqualified": {"count": unqualified, "top": top},
        "unmatched": unmatched_feedback_count(conn),
    }
