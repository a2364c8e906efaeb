"""Delivery: (e) a provider's ``max_rate`` honoured by two worker processes together.

The SMS connection sets ``max_rate``; two mapped delivery tasks in two processes send to the SMS
sink (100 ms latency) for about a minute. The rate over the run and the slowest and fastest 10-second
windows, with the target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_max_rate.py   # make bench: all of them
    MC_BENCH_DSN=...            # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_RATE=...           # the provider's max_rate (default 20 messages/s)
    MC_BENCH_RATE_SECONDS=...   # how long the run lasts at that rate (default 60)
    MC_BENCH_SCALE=...          # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import psycopg

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.delivery import (
    HEADING,
    SETTINGS,
    Sinks,
    create_database,
    deliver_in_workers,
    events,
    latency_sinks,
)
from bench.harness.report import Report, run
from messagecenter import execution
from messagecenter.intake import store

PREFIX = "mc_bench_delivery_rate_"
RATE = float(os.environ.get("MC_BENCH_RATE", "20"))  # the provider's max_rate
RATE_SECONDS = env.seconds("MC_BENCH_RATE_SECONDS", 60)


def bench_rate(databases: Databases, sinks: Sinks) -> tuple[float, float, float]:
    """Two worker processes deliver to one provider whose connection sets ``max_rate``: the rate
    over the whole run, and the slowest and fastest 10-second windows."""
    conn_json = json.loads(sinks.connections["AIRFLOW_CONN_MC_SMS"])
    rate_connection = env.connection(conn_json, max_rate=RATE)
    total = int(RATE * RATE_SECONDS)
    dsn = create_database(databases, "rate")
    with psycopg.connect(dsn, autocommit=True) as conn:
        store.insert_events(conn, "batch", events("sms", total), instance_id=1)
        shards = execution.split_queue(conn, "batch", replace(SETTINGS, parallelism=2))
        for shard in shards:
            execution.link_templates(conn, shard)
    assert len(shards) == 2, shards
    arrivals = sinks.sms
    arrivals.reset()
    os.environ.update({**sinks.connections, "AIRFLOW_CONN_MC_SMS": rate_connection})
    try:
        sent = deliver_in_workers(dsn, shards)
    finally:
        os.environ.update(sinks.connections)
    assert sent == total, f"{sent} of {total} sent"
    times = sorted(arrivals.times)
    windows = []
    start = times[0]
    while start + 10 <= times[-1]:
        windows.append(sum(1 for t in times if start <= t < start + 10) / 10)
        start += 10
    windows = windows or [arrivals.rate()]  # a run shorter than one window
    return arrivals.rate(), min(windows), max(windows)


def measure(report: Report, databases: Databases) -> None:
    report.add(HEADING)
    with latency_sinks() as sinks:
        overall, slowest, fastest = bench_rate(databases, sinks)
    report.add(
        f"(e) max_rate {RATE:g}/s on the SMS provider, 2 worker processes, {RATE_SECONDS:g} s: "
        f"{overall:.2f} msgs/s over the run ({overall / RATE - 1:+.1%}); 10 s windows "
        f"{slowest:.1f} to {fastest:.1f} msgs/s   [target: within 10%]"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
