"""Pipeline: (f) task instances per ``batchEventsProcessing`` run (1 split + 2 x shards), default
settings, for 10k and for 100k pending events: the number of mapped tasks must not grow with the
backlog. Target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/pipeline_task_instances.py   # make bench: all of them
    MC_BENCH_DSN=...     # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_SCALE=...   # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import psycopg

from bench.harness import env
from bench.harness.databases import Databases, scalar
from bench.harness.pipeline import HEADING, create_database, insert_pending
from bench.harness.report import Report, count_label, ratio, run
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings

PREFIX = "mc_bench_pipeline_ti_"
SMALL, LARGE = env.size(None, 10_000), env.size(None, 100_000)


def task_instances(dsn: str, events: int) -> tuple[int, int]:
    """Task instances of one run over ``events`` pending events, and its shards."""
    insert_pending(dsn, "batch", events)
    with psycopg.connect(dsn) as conn:
        shards = execution.split_queue(conn, "batch", ProcessingSettings())
    assert sum(s.count for s in shards if s.batch_id is not None) <= events
    claimed = scalar(dsn, "SELECT count(*) FROM mc.batch_event WHERE batch_id IS NOT NULL")
    assert claimed == events, f"split claimed {claimed} of {events}"
    return 1 + 2 * len(shards), len(shards)


def measure(report: Report, databases: Databases) -> None:
    small, large = count_label(SMALL), count_label(LARGE)
    with report.section("(f) task instances"):
        ti_small, shards_small = task_instances(create_database(databases, f"ti_{small}"), SMALL)
        ti_large, shards_large = task_instances(create_database(databases, f"ti_{large}"), LARGE)
    report.add(HEADING)
    report.add("(f) task instances per batchEventsProcessing run (1 split + 2 x shards), default settings")
    same = ratio(f"{large}/{small}", ti_large / ti_small, "equal within 10%", unit="")
    report.add(
        f"      {small} events: {ti_small} ({shards_small} shards); {large} events: {ti_large}"
        f" ({shards_large} shards); {same}"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
