"""Delivery: (a) ``batchEventsProcessing``'s link and deliver steps against providers' latency, next
to (c) a raw client with as many concurrent connections to the same sink, per channel.

N events per channel (4 shards, one process per mapped delivery task, as the mapped tasks run them),
first to last arrival at the sink; the raw client sends pre-rendered messages. Every event Sent,
every message arrived once, checked before printing; the ratio with its target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_batch_vs_raw.py   # make bench: all of them
    MC_BENCH_DSN=...               # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_DELIVERY_EVENTS=...   # N per channel (default 4000)
    MC_BENCH_SCALE=...             # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import os

import psycopg

from bench.harness.databases import Databases
from bench.harness.delivery import (
    BATCH_EVENTS,
    HEADING,
    SETTINGS,
    SHARDS,
    Channel,
    channels,
    create_database,
    deliver_in_workers,
    events,
    latency_sinks,
)
from bench.harness.report import Report, ratio, run
from messagecenter import execution
from messagecenter.intake import store

PREFIX = "mc_bench_delivery_batch_"


def bench_batch(databases: Databases, channel: Channel, connections: dict[str, str]) -> float:
    """Messages/s of the mapped delivery tasks over ``BATCH_EVENTS`` linked events."""
    dsn = create_database(databases, f"batch_{channel.name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        store.insert_events(conn, "batch", events(channel.name, BATCH_EVENTS), instance_id=1)
        shards = execution.split_queue(conn, "batch", SETTINGS)
        for shard in shards:
            execution.link_templates(conn, shard)
    assert len(shards) == SHARDS, shards
    channel.arrivals.reset()
    os.environ.update(connections)  # the worker processes' connections
    sent = deliver_in_workers(dsn, shards)
    assert sent == BATCH_EVENTS, f"{sent} of {BATCH_EVENTS} sent"
    assert sorted(channel.arrivals.events) == sorted(set(channel.arrivals.events))
    assert len(channel.arrivals.events) == BATCH_EVENTS
    return channel.arrivals.rate()


def measure(report: Report, databases: Databases) -> None:
    report.add(HEADING)
    with latency_sinks() as sinks:
        for channel in channels(sinks):
            batch = bench_batch(databases, channel, sinks.connections)
            connections = channel.connections * SHARDS
            raw = channel.raw(channel.port, connections, BATCH_EVENTS, channel.arrivals)
            report.add(f"({channel.name}, {channel.latency * 1000:.0f} ms)")
            report.add(
                f"  (a) batch, {BATCH_EVENTS} events, {SHARDS} shards in {SHARDS} worker processes: "
                f"{batch:7.0f} msgs/s   raw client, {connections} connections: {raw:7.0f} msgs/s   "
                f"{ratio('', batch / raw, '>= 0.7')}"
            )


if __name__ == "__main__":
    run(measure, PREFIX)
