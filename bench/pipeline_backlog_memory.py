"""Pipeline: (g) peak RSS of a fresh worker process splitting, linking and delivering out of a
1M-event backlog, with 10 messages in flight per chunk (a thread pool, as for a real provider),
next to a fresh process that only imports and connects. Target (2 cores) in brackets.

The peak is the child's ``VmHWM``, read by the child itself: ``wait4``'s ``ru_maxrss`` would also
count the pages the child shared with this (large) bench process between fork and exec.

    PYTHONPATH=plugins:. .venv/bin/python bench/pipeline_backlog_memory.py   # make bench: all of them
    MC_BENCH_DSN=...       # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_BACKLOG=...   # backlog (default 1000000)
    MC_BENCH_SCALE=...     # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import env
from bench.harness.databases import Databases, scalar
from bench.harness.pipeline import HEADING, create_database, insert_pending, status_counts
from bench.harness.report import Report, run
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings
from messagecenter.delivery import NullTransport

PREFIX = "mc_bench_pipeline_backlog_"
BACKLOG = env.size("MC_BENCH_BACKLOG", 1_000_000)


class ConcurrentNullTransport(NullTransport):
    """A null transport a chunk sends to with 10 messages in flight, as to a real provider."""

    max_connections = 10


def concurrent_null(channel: int) -> NullTransport:
    return ConcurrentNullTransport()


def backlog_worker(dsn: str, mode: str) -> None:
    """Run in a fresh interpreter: ``baseline`` only imports and connects; ``run`` does one batch run.
    Prints its figures, with its own peak RSS (``vmhwm_kib``), as JSON."""
    env.quiet_logging()
    result: dict[str, Any] = {}
    with psycopg.connect(dsn) as conn:
        if mode == "run":
            settings = ProcessingSettings()
            start = time.perf_counter()
            shards = execution.split_queue(conn, "batch", settings)
            counts = execution.Counts()
            for shard in shards:
                counts.add(execution.link_templates(conn, shard))
            for shard in shards:
                counts.add(execution.deliver_shard(conn, shard, settings, transport_for=concurrent_null))
            result = {"shards": len(shards), "seconds": time.perf_counter() - start, **counts.summary()}
    status = Path("/proc/self/status").read_text()
    result["vmhwm_kib"] = int(
        next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
    )
    print(json.dumps(result))


def measure(report: Report, databases: Databases) -> None:
    with report.section("(g) backlog memory"):
        dsn = create_database(databases, "backlog")
        backlog_insert = insert_pending(dsn, "batch", BACKLOG)
        baseline = env.run_json_child(__file__, "--backlog-worker", dsn, "baseline")
        worker = env.run_json_child(__file__, "--backlog-worker", dsn, "run")
        expected = min(BACKLOG, ProcessingSettings.max_events_per_run)
        assert worker["sent"] == expected, worker
        assert scalar(dsn, "SELECT count(*) FROM mc.delivery_log") == expected
        assert status_counts(dsn, "batch").get(0, 0) == BACKLOG - expected

    out = report.add
    out(HEADING)
    out(
        f"(g) worker with a {BACKLOG}-event backlog (stored via store.insert_events, 10k per COPY,"
        f" in {backlog_insert:.1f} s): fresh process, one split + link + deliver (NULL transport,"
        " 10 messages in flight)"
    )
    out(
        f"      {worker['sent']} delivered over {worker['shards']} shards in {worker['seconds']:.1f} s;"
        f" peak RSS (VmHWM) {worker['vmhwm_kib'] / 1024:.0f} MB   [target <= 300 MB]"
    )
    out(f"      baseline (import + connect only): peak RSS {baseline['vmhwm_kib'] / 1024:.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--backlog-worker":
        backlog_worker(sys.argv[2], sys.argv[3])
    else:
        run(measure, PREFIX)
