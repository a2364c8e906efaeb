"""What the feedback benchmarks share: events already Sent with their delivery logs (the state the
feedback applies to), stored set-based, and how the logs read afterwards."""

from __future__ import annotations

import psycopg

from bench.harness.databases import Databases

SENT, FAILED = 2, 4
SECRET = "bench-feedback-secret-" + "k" * 24  # MC_FEEDBACK_SECRET of the run: signs the VERP paths
HEADING = "feedback benchmark (execution database of this run; every figure measured in this run)"

INSERT_EVENTS = """
INSERT INTO mc.batch_event (id, event_type, channel, email, status, created, last_modified, processed)
SELECT g, 'ORDER_CONFIRMATION', 0, 'customer' || g || '@example.com', 2, now(), now(), now()
FROM generate_series(1, %(total)s) AS g
"""
INSERT_LOGS = """
INSERT INTO mc.delivery_log (event_id, queue, status, channel, address, message_id, provider_answer)
SELECT g, 'batch', 2, 0, 'customer' || g || '@example.com', %(prefix)s || g, '250 2.0.0 Ok'
FROM generate_series(1, %(total)s) AS g
"""
LOG_COUNTS = "SELECT status, delivery, count(*) FROM mc.delivery_log GROUP BY status, delivery"


def address(event_id: int) -> str:
    """The address event ``event_id`` was sent to (as its log stores it)."""
    return f"customer{event_id}@example.com"


def message_id(event_id: int, prefix: str) -> str:
    """The provider message id stored on event ``event_id``'s log."""
    return f"{prefix}{event_id}"


def create_sent(databases: Databases, name: str, total: int, *, message_id_prefix: str = "msg-") -> str:
    """A new execution database holding events 1..``total``, Sent, each with its delivery log (its
    provider message id ``<message_id_prefix><event id>``), inserted set-based and analysed."""
    dsn = databases.create(name, "execution")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(INSERT_EVENTS, {"total": total})
        conn.execute(INSERT_LOGS, {"total": total, "prefix": message_id_prefix})
        conn.execute("VACUUM ANALYZE mc.batch_event, mc.delivery_log")
    return dsn


def log_counts(dsn: str) -> dict[tuple[int, int | None], int]:
    """(status, delivery) -> logs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {(r[0], r[1]): r[2] for r in conn.execute(LOG_COUNTS)}
