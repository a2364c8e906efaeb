"""Cleanup: purge what the control instance has archived, once past the retention (``mcCleanup``).

An unarchived event is never purged, whatever its age: only rows last modified before the archived
period that the archiving runs write back on this database (``mc.archive_mark``) are eligible.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import psycopg

from messagecenter.db.queries import query

log = logging.getLogger(__name__)


def purge_archived(
    conn: psycopg.Connection[Any], *, retention: timedelta, batch_size: int = 10_000
) -> dict[str, int]:
    """Delete final events and delivery logs older than ``retention`` that control has archived.

    Only rows last modified before the archived period written back by the archiving runs
    (``mc.archive_mark``) are eligible: an event that was never archived is never purged,
    whatever its age. Deletes run in bounded batches, each in its own transaction.
    """
    counts = {"rt": 0, "batch": 0, "delivery_log": 0}
    mark = conn.execute(query("get_archive_mark")).fetchone()
    conn.rollback()
    if mark is None:
        log.warning("Nothing was archived yet: nothing is purged")
        return counts
    params = {"retention": retention.total_seconds(), "limit": batch_size}
    statements = {
        "rt": query("purge_events", "rt"),
        "batch": query("purge_events", "batch"),
        "delivery_log": query("purge_logs"),
    }
    for name, statement in statements.items():
        while True:
            with conn.transaction():
                deleted = conn.execute(statement, params).rowcount
            counts[name] += deleted
            if deleted < batch_size:
                break
            log.info("Purged %s %s rows so far", counts[name], name)
    log.info(
        "Purged %s rt events, %s batch events and %s delivery logs older than %s (archived until %s)",
        counts["rt"],
        counts["batch"],
        counts["delivery_log"],
        retention,
        mark[0].isoformat(),
    )
    return counts
