"""Pipeline: (e) real-time latency, event accepted -> delivery log written.

``drain_realtime`` (NULL transport) runs in its own process; this process stores single events
through ``store.insert_events``, first at 200 events/s, then idle (events half a second apart).
Percentiles of each phase, the targets (2 cores) in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/pipeline_realtime_latency.py   # make bench: all of them
    MC_BENCH_DSN=...          # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_RT_SECONDS=...   # seconds of the 200 events/s load (default 10)
    MC_BENCH_SCALE=...        # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from typing import Any

import psycopg

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.pipeline import HEADING, SENT, create_database, event_body, null_transport
from bench.harness.report import Report, percentiles, run
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake import store
from messagecenter.intake.decode import EventIn, event_from_dict

PREFIX = "mc_bench_pipeline_rt_"
RT_SECONDS = env.seconds("MC_BENCH_RT_SECONDS", 10)
RT_RATE = 200  # events/s of the loaded real-time phase
IDLE_EVENTS, IDLE_SPACING = env.size(None, 30, minimum=2), 0.5


def _drain(dsn: str, lifetime: float) -> None:
    env.quiet_logging()
    execution.drain_realtime(
        functools.partial(psycopg.connect, dsn),
        ProcessingSettings(),
        transport_for=null_transport,
        lifetime_seconds=lifetime,
    )


def push_paced(conn: psycopg.Connection[Any], events: list[EventIn], spacing: float) -> list[int]:
    ids: list[int] = []
    start = time.perf_counter()
    for i, event in enumerate(events):
        delay = start + i * spacing - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ids.extend(store.insert_events(conn, "rt", [event], instance_id=1).ids)
    return ids


def wait_for_logs(conn: psycopg.Connection[Any], ids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = conn.execute(
            "SELECT count(*) FROM mc.delivery_log WHERE event_id = ANY(%s)", (ids,)
        ).fetchone()
        if done and done[0] == len(ids):
            return
        time.sleep(0.1)


def latencies_ms(conn: psycopg.Connection[Any], ids: list[int]) -> list[float]:
    rows = conn.execute(
        "SELECT extract(epoch FROM l.created - e.created) * 1000, l.status FROM mc.rt_event AS e"
        " JOIN mc.delivery_log AS l ON l.event_id = e.id WHERE e.id = ANY(%s)",
        (ids,),
    ).fetchall()
    assert len(rows) == len(ids), f"{len(ids) - len(rows)} of {len(ids)} real-time events got no log"
    assert all(status == SENT for _, status in rows), "a real-time event was not Sent"
    return [float(ms) for ms, _ in rows]


def drain_listening(conn: psycopg.Connection[Any]) -> bool:
    """Whether a drain LISTENs on this database (it is up)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%LISTEN mc_rt_event'"
    ).fetchone()
    return bool(row and row[0])


def bench_realtime(dsn: str) -> tuple[tuple[float, float, float], tuple[float, float, float], int]:
    """(p50, p95, p99) under load, the same idle, and the number of loaded events."""
    loaded = int(RT_RATE * RT_SECONDS)
    events = [event_from_dict(event_body(n)) for n in range(loaded + IDLE_EVENTS)]
    context = multiprocessing.get_context("spawn")
    drainer = context.Process(target=_drain, args=(dsn, RT_SECONDS + IDLE_EVENTS * IDLE_SPACING + 120))
    drainer.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30  # the drain is up when it LISTENs
            while not drain_listening(conn):
                assert drainer.is_alive(), "the drain process died"
                assert time.monotonic() < deadline, "the drain did not start listening"
                time.sleep(0.05)
            time.sleep(1)
            busy_ids = push_paced(conn, events[:loaded], 1 / RT_RATE)
            wait_for_logs(conn, busy_ids)
            time.sleep(2)  # idle now
            idle_ids = push_paced(conn, events[loaded:], IDLE_SPACING)
            wait_for_logs(conn, idle_ids)
            busy = percentiles(latencies_ms(conn, busy_ids))
            idle = percentiles(latencies_ms(conn, idle_ids))
    finally:
        drainer.terminate()
        drainer.join()
    return busy, idle, loaded


def measure(report: Report, databases: Databases) -> None:
    with report.section("(e) real time"):
        busy, idle, loaded = bench_realtime(create_database(databases, "rt"))
    out = report.add
    out(HEADING)
    out(
        "(e) real-time latency, accepted -> delivery log (drain_realtime in its own process,"
        " single-event store.insert_events from the bench process)"
    )
    out(
        f"      {RT_RATE} events/s for {RT_SECONDS:g} s ({loaded} events): p50 {busy[0]:.0f} ms,"
        f" p95 {busy[1]:.0f} ms, p99 {busy[2]:.0f} ms   [target p95 <= 1000 ms]"
    )
    out(
        f"      idle, {IDLE_EVENTS} events {IDLE_SPACING:g} s apart: p50 {idle[0]:.0f} ms,"
        f" p95 {idle[1]:.0f} ms, p99 {idle[2]:.0f} ms   [target p95 <= 250 ms]"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
