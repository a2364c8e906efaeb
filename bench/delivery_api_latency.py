"""Delivery: (d) real-time latency, accepted by the API -> status Sent readable through ``GET``, at
200 events/s with the 20 ms SMTP relay (the standalone API and the drain in their own processes).
One event in five is watched, its status polled every 10 ms; target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_api_latency.py   # make bench: all of them
    MC_BENCH_DSN=...          # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_RT_SECONDS=...   # seconds of 200 events/s (default 10)
    MC_BENCH_SCALE=...        # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from bench.harness import env
from bench.harness.api import AUTH, standalone_api
from bench.harness.databases import Databases
from bench.harness.delivery import HEADING, create_database, drain_process, latency_sinks
from bench.harness.report import Report, percentiles, run

PREFIX = "mc_bench_delivery_latency_"
RT_SECONDS = env.seconds("MC_BENCH_RT_SECONDS", 10)


def bench_latency(databases: Databases, connections: dict[str, str]) -> tuple[float, float, float, int]:
    """p50, p95, p99 (ms) from an accepted push to status Sent readable through GET; events watched."""
    dsn = create_database(databases, "rt_latency")
    latencies: list[float] = []
    with standalone_api(dsn, connections) as api:
        base = f"{api}/api/v1"
        with (
            drain_process(dsn, connections, lifetime=300),
            httpx.Client(headers=AUTH, timeout=30) as client,
            ThreadPoolExecutor(32) as pollers,
        ):
            local = threading.local()

            def until_sent(event_id: int, accepted: float) -> float:
                """Poll GET every 10 ms until the event reads Sent; seconds from its acceptance."""
                if not hasattr(local, "client"):
                    local.client = httpx.Client(headers=AUTH, timeout=30)
                while local.client.get(f"{base}/events/rt/{event_id}").json()["status"] != 2:
                    assert time.monotonic() - accepted < 60, f"event {event_id} not Sent after 60 s"
                    time.sleep(0.01)
                return time.monotonic() - accepted

            total = int(200 * RT_SECONDS)
            watched: list[Future[float]] = []
            start = time.monotonic()
            for n in range(total):
                time.sleep(max(start + n / 200 - time.monotonic(), 0))
                body = {"type": "CODE", "email": f"l{n}@example.com", "ctx": {"n": n}}
                answer = client.post(f"{base}/events/rt", json=body)
                assert answer.status_code == 201, answer.text
                if n % 5 == 0:  # one event in five is watched through GET (each watch polls often)
                    watched.append(pollers.submit(until_sent, answer.json()["id"], time.monotonic()))
            latencies.extend(f.result() for f in watched)
    p50, p95, p99 = percentiles([x * 1000 for x in latencies])
    return p50, p95, p99, len(latencies)


def measure(report: Report, databases: Databases) -> None:
    report.add(HEADING)
    with latency_sinks() as sinks:
        p50, p95, p99, n = bench_latency(databases, sinks.connections)
    report.add(
        f"(d) real time, 200 events/s for {RT_SECONDS:g} s through the API, 20 ms relay: accepted -> "
        f"Sent readable via GET: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms "
        f"({n} events)   [target p95 <= 1000 ms]"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
