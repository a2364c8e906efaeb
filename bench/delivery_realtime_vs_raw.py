"""Delivery: (b) one real-time drain process against providers' latency, next to (c) a raw client
with as many concurrent connections to the same sink, per channel (and, for context, the raw
one-connection loop).

N events pushed at once, first to last arrival at the sink; the raw client sends pre-rendered
messages. Every message arrived once, checked before printing; the ratio with its target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_realtime_vs_raw.py   # make bench: all of them
    MC_BENCH_DSN=...                  # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_DELIVERY_RT_EVENTS=...   # N per channel (default 2000, or half MC_BENCH_DELIVERY_EVENTS)
    MC_BENCH_SCALE=...                # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import time

import psycopg

from bench.harness.databases import Databases
from bench.harness.delivery import (
    HEADING,
    RT_EVENTS,
    Channel,
    channels,
    create_database,
    drain_process,
    events,
    latency_sinks,
)
from bench.harness.report import Report, ratio, run
from messagecenter.intake import store

PREFIX = "mc_bench_delivery_rt_"


def bench_realtime(databases: Databases, channel: Channel, connections: dict[str, str]) -> float:
    """Messages/s of one drain over ``RT_EVENTS`` events stored at once."""
    dsn = create_database(databases, f"rt_{channel.name}")
    arrivals = channel.arrivals
    arrivals.reset()
    with drain_process(dsn, connections, lifetime=300):
        with psycopg.connect(dsn, autocommit=True) as conn:
            store.insert_events(conn, "rt", events(channel.name, RT_EVENTS), instance_id=1)
        deadline = time.monotonic() + 300
        while len(arrivals.times) < RT_EVENTS and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(arrivals.events) == RT_EVENTS == len(set(arrivals.events)), len(arrivals.events)
    return arrivals.rate()


def measure(report: Report, databases: Databases) -> None:
    report.add(HEADING)
    with latency_sinks() as sinks:
        for channel in channels(sinks):
            rt = bench_realtime(databases, channel, sinks.connections)
            raw_rt = channel.raw(channel.port, channel.connections, RT_EVENTS, channel.arrivals)
            one_count = min(200 if channel.name == "email" else 50, RT_EVENTS)
            one = channel.raw(channel.port, 1, one_count, channel.arrivals)
            report.add(f"({channel.name}, {channel.latency * 1000:.0f} ms)")
            report.add(
                f"  (b) real time, {RT_EVENTS} events, one drain process:          "
                f"{rt:7.0f} msgs/s   raw client, {channel.connections} connections: {raw_rt:7.0f} msgs/s   "
                f"{ratio('', rt / raw_rt, '>= 0.7')}"
            )
            report.add(f"  (c) context: raw one-connection loop {one:7.0f} msgs/s")


if __name__ == "__main__":
    run(measure, PREFIX)
