"""Pipeline: (a) split -> link -> deliver -> status copy, next to (b) its set-based SQL floor.

(a) our pipeline, pending -> Sent with the status copied (NULL transport), driven like the DAG:
    one ``split_queue``, ``link_templates`` per shard, ``deliver_shard`` per shard (both mapped
    steps run in a pool of worker processes, each task with its own connection, like mapped task
    instances on workers), then ``update_events_status``;
(b) the bare set-based SQL floor of the same state changes (3 statements) on an identical dataset.
Both in fresh databases of the same server, in this run; printed as the ratio (a)/(b), with the
target (2 cores) in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/pipeline_vs_sql_floor.py   # make bench: all of them
    MC_BENCH_DSN=...               # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_PIPELINE_EVENTS=...   # events of (a) and (b) (default 200000)
    MC_BENCH_WORKERS=...           # worker processes of the mapped link/deliver steps (default 2)
    MC_BENCH_SCALE=...             # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import time

import psycopg

from bench.harness.databases import Databases
from bench.harness.pipeline import (
    EVENTS,
    SENT,
    create_database,
    insert_pending,
    measure_pipeline,
    report_pipeline,
    status_counts,
)
from bench.harness.report import Report, ratio, run

PREFIX = "mc_bench_pipeline_floor_"

FLOOR_LINK = """
UPDATE mc.batch_event AS e
SET status = 1, template_id = t.template_id, template_version = t.version,
    next_try = now(), last_modified = now()
FROM (SELECT DISTINCT ON (event_type, channel) event_type, channel, template_id, version
      FROM mc.published_template ORDER BY event_type, channel, published_at DESC, version DESC) AS t
WHERE e.status = 0 AND e.event_type = t.event_type AND e.channel = t.channel
"""
FLOOR_LOG = """
INSERT INTO mc.delivery_log
    (event_id, queue, status, channel, address, template_id, template_version, message_id,
     provider_answer, tries)
SELECT id, 'batch', 2, channel, lower(email), template_id, template_version, 'null-' || id,
       'null transport', 1
FROM mc.batch_event WHERE status = 1
"""
FLOOR_COPY = """
UPDATE mc.batch_event AS e
SET status = l.status, next_try = NULL, processed = l.created, last_modified = now()
FROM mc.delivery_log AS l
WHERE e.id = l.event_id AND e.status = 1
"""


def bench_floor(dsn: str, events: int) -> tuple[float, list[int]]:
    """Events/s of the three statements, and the rows each changed."""
    rows = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        for statement in (FLOOR_LINK, FLOOR_LOG, FLOOR_COPY):
            rows.append(conn.execute(statement).rowcount)  # each statement is its own transaction
        elapsed = time.perf_counter() - start
    return events / elapsed, rows


def measure(report: Report, databases: Databases) -> None:
    ours = measure_pipeline(report, databases)
    with report.section("(b) floor"):
        floor_dsn = create_database(databases, "floor")
        insert_pending(floor_dsn, "batch", EVENTS)
        floor, rows = bench_floor(floor_dsn, EVENTS)
        assert rows == [EVENTS] * 3, rows
        assert status_counts(floor_dsn, "batch") == {SENT: EVENTS}

    report_pipeline(report, ours)
    statements = "link UPDATE, log INSERT..SELECT, copy UPDATE"
    report.add(f"(b) set-based SQL floor ({statements}) {floor:10.0f} events/s")
    report.add(f"      {ratio('(a)/(b)', ours.rate / floor, '>= 0.33')}")


if __name__ == "__main__":
    run(measure, PREFIX)
