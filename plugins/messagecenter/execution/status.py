"""Status: copy final delivery results onto the events, and expire what waited too long."""

from __future__ import annotations

from typing import Any

import psycopg

from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import QUEUES
from messagecenter.db.queries import fetch_value, query
from messagecenter.execution.shards import Counts

_WATERMARK = "delivery_log"


def update_events_status(conn: psycopg.Connection[Any]) -> Counts:
    """Copy Sent / Ignored / Failed from the delivery logs onto the events, past a watermark.

    The watermark is a transaction id. Each run copies every visible log written at or past it,
    then moves it to the oldest transaction that was still running when the run started
    (``pg_snapshot_xmin``): a log committed late has an id at or past that, so a later run copies
    it; it is never skipped, and a busy cluster never delays the logs already committed.
    """
    counts = Counts()
    with conn.transaction():
        completed = fetch_value(conn, query("completed_txid"))
        row = conn.execute(query("get_watermark"), {"name": _WATERMARK}).fetchone()
        low = row[0] if row else "0"
        for queue in QUEUES:
            counts.copied += conn.execute(
                query("copy_delivery_status", queue), {"low": low, "queue": queue}
            ).rowcount
        conn.execute(query("set_watermark"), {"name": _WATERMARK, "txid": completed})
    return counts


def expire_events(conn: psycopg.Connection[Any], settings: ProcessingSettings) -> Counts:
    """Mark Event expired (6) what was not delivered within its queue's validity."""
    counts = Counts()
    validity = {"rt": settings.rt_validity_seconds, "batch": settings.batch_validity_seconds}
    with conn.transaction():
        for queue in QUEUES:
            counts.expired += conn.execute(
                query("expire_events", queue), {"validity": validity[queue]}
            ).rowcount
    return counts
