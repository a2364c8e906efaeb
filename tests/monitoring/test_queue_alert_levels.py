"""Each queue is judged against its own alert levels: batch events wait up to a minute by design."""

from __future__ import annotations

import psycopg

from messagecenter.core.settings import AlertLevels, load_settings
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.monitoring import indicators


def seed_both_queues(conn: psycopg.Connection) -> None:
    """In each queue: 150 events pending for 75 s, and 10 Sent 42 s after they arrived."""
    event = event_from_dict({"type": "OTP", "channel": "sms", "mobile_phone": "+33600000000"})
    for queue in ("rt", "batch"):
        store.insert_events(conn, queue, [event] * 160, instance_id=1)
        conn.execute(f"UPDATE mc.{queue}_event SET created = now() - interval '75 seconds'")
        conn.execute(
            f"UPDATE mc.{queue}_event SET status = 2, processed = created + interval '42 seconds' "
            f"WHERE id IN (SELECT id FROM mc.{queue}_event ORDER BY id LIMIT 10)"
        )


def levels(metrics: dict[str, dict[str, object]]) -> dict[str, object]:
    return {name: metrics[name]["level"] for name in ("pending", "queue_seconds", "processing_seconds")}


def test_batch_75_s_queue_time_is_ok_rt_75_s_is_an_alert(conn: psycopg.Connection) -> None:
    seed_both_queues(conn)
    rt = indicators.queue_metrics(conn, "rt", AlertLevels())
    batch = indicators.queue_metrics(conn, "batch", AlertLevels())
    assert 75 <= rt["queue_seconds"]["value"] < 90
    assert batch["processing_seconds"]["value"] == 42.0
    assert levels(rt) == {"pending": "warning", "queue_seconds": "alert", "processing_seconds": "alert"}
    assert levels(batch) == {"pending": "ok", "queue_seconds": "ok", "processing_seconds": "ok"}
    assert batch["queue_seconds"]["thresholds"] == [90, 300]
    assert batch["processing_seconds"]["thresholds"] == [120, 600]
    assert batch["pending"]["thresholds"] == [10_000, 50_000]
    assert rt["queue_seconds"]["thresholds"] == [4, 8]  # MC_ALERT_QUEUE_SECONDS: the real-time queue


def test_batch_levels_are_settings_of_their_own(conn: psycopg.Connection) -> None:
    seed_both_queues(conn)
    settings = load_settings(
        {
            "MC_ALERT_BATCH_QUEUE_SECONDS": "30,60",
            "MC_ALERT_BATCH_PROCESSING_SECONDS": "40,100",
            "MC_ALERT_BATCH_PENDING": "100,1000",
            "MC_ALERT_QUEUE_SECONDS": "100,200",
        }
    )
    alerts = settings.monitoring.alerts
    assert alerts.batch_queue_seconds == (30, 60)
    batch = indicators.queue_metrics(conn, "batch", alerts)
    assert levels(batch) == {"pending": "warning", "queue_seconds": "alert", "processing_seconds": "warning"}
    rt = indicators.queue_metrics(conn, "rt", alerts)
    assert rt["queue_seconds"]["level"] == "ok"  # the real-time level moved, not the batch one
