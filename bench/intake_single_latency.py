"""Intake: single-event pushes (``POST /api/v1/events/rt``) one after the other, their rate and
latency through a real uvicorn process on a fresh database. Target (2 cores): p95 <= 10 ms.

    PYTHONPATH=plugins:. .venv/bin/python bench/intake_single_latency.py   # make bench: all of them
    MC_BENCH_DSN=...      # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_SINGLE=...   # single pushes (default 2000)
    MC_BENCH_SCALE=...    # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import time

import httpx

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.intake import api_client, count, event_body
from bench.harness.report import Report, percentiles, run

PREFIX = "mc_bench_intake_single_"
SINGLE = env.size("MC_BENCH_SINGLE", 2000, minimum=2)


def bench_single_api(client: httpx.Client, n: int) -> tuple[float, float, float]:
    """Events/s, p50 and p95 (ms) of ``n`` pushes in a row."""
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        client.post("/api/v1/events/rt", json=event_body(i)).raise_for_status()
        latencies.append(time.perf_counter() - t0)
    rate = n / (time.perf_counter() - start)
    p50, p95, _ = percentiles(latencies, method="exclusive")
    return rate, p50 * 1000, p95 * 1000


def measure(report: Report, databases: Databases) -> None:
    api_dsn = databases.create("api", "execution")
    with api_client(api_dsn) as client:
        rate, p50, p95 = bench_single_api(client, SINGLE)
    assert count(api_dsn, "rt") == SINGLE, "single API lost or duplicated events"

    report.add(f"intake benchmark: {SINGLE} single pushes, one after the other")
    report.add(
        f"  single-event API          {rate:10.0f} events/s   p50 {p50:.2f} ms   p95 {p95:.2f} ms"
        "   [target p95 <= 10 ms]"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
