"""What the Message Center page and the doctor measure, each on the database connection it is handed.

Per queue of an execution instance: pending events, their average queue time (how long what is
waiting has waited), the processing time (arrival to final status) and error rate (Failed /
Sent+Ignored+Failed) of the last hour, each with Campaign's alert level (``ok``, ``warning``,
``alert``; thresholds from :class:`~messagecenter.core.settings.AlertLevels`); events per status
received in the last hour and day; events per minute by final status over the last hours (the
throughput plot); and the template versions it routes to. On control: each instance's archiving
lag. Levels are computed here, so they are tested without a browser.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg

from messagecenter.core.settings import AlertLevels
from messagecenter.core.types import QUEUES, Status
from messagecenter.db.queries import fetch_value, query

AlertLevel = Literal["ok", "warning", "alert"]
HOUR, DAY = 3600, 86_400
THROUGHPUT_SECONDS = 6 * HOUR
FINAL = (Status.SENT, Status.IGNORED, Status.FAILED, Status.NOT_TAKEN_INTO_ACCOUNT, Status.EXPIRED)


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


def queue_metrics(conn: psycopg.Connection[Any], queue: str, alerts: AlertLevels) -> dict[str, Any]:
    """The indicators of one queue, with their alert levels."""
    pending, queue_seconds = conn.execute(query("queue_now", queue)).fetchone() or (0, 0.0)
    processing, sent, ignored, failed = conn.execute(query("queue_last_hour", queue)).fetchone() or (
        0.0,
        0,
        0,
        0,
    )
    return {
        "pending": _metric(pending, alerts.pending, 0),
        "queue_seconds": _metric(queue_seconds, alerts.queue_seconds),
        "processing_seconds": _metric(processing, alerts.processing_seconds),
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


def instance_overview(conn: psycopg.Connection[Any], alerts: AlertLevels) -> dict[str, Any]:
    """Everything the page shows of one instance's queues."""
    return {
        "queues": {queue: queue_metrics(conn, queue, alerts) for queue in QUEUES},
        "status_last_hour": {queue: status_counts_since(conn, queue, HOUR) for queue in QUEUES},
        "status_last_day": {queue: status_counts_since(conn, queue, DAY) for queue in QUEUES},
        "throughput": throughput(conn),
    }


def published_template_count(conn: psycopg.Connection[Any]) -> int:
    """Template versions an execution instance routes to."""
    return int(fetch_value(conn, query("count_published_templates")) or 0)


def archive_lags(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """Control: per instance, now minus the end of its archived period, in seconds."""
    return {instance: lag for instance, _until, lag in conn.execute(query("archive_lags")).fetchall()}
