"""Intake: the REST batch API, 1,000 and 10,000 events per request, next to the bare COPY floor.

The API runs in a real uvicorn process against a fresh database; the floor COPYs the same rows,
already validated and serialised, straight into another. Target (2 cores): batch API >= 0.3x COPY.

    PYTHONPATH=plugins:. .venv/bin/python bench/intake_batch_vs_copy.py   # make bench: all of them
    MC_BENCH_DSN=...      # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_EVENTS=...   # events per measurement (default 50000)
    MC_BENCH_SCALE=...    # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import time

import httpx
import psycopg
from psycopg import sql

from bench.harness.databases import Databases
from bench.harness.intake import EVENTS, JSON, api_client, batch_bodies, count, event_body
from bench.harness.report import Report, ratio, run
from messagecenter.core.ids import make_event_id
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict

PREFIX = "mc_bench_intake_batch_"


def bench_batch_api(client: httpx.Client, per_request: int, total: int) -> float:
    bodies = batch_bodies(per_request, total)
    start = time.perf_counter()
    for body in bodies:
        response = client.post("/api/v1/events/batch", content=body, headers=JSON)
        response.raise_for_status()
    return total / (time.perf_counter() - start)


def bench_bare_copy(dsn: str, total: int) -> float:
    """The floor: the same rows, already validated and serialised, COPY'd straight in."""
    events = [event_from_dict(event_body(n)) for n in range(total)]
    rows = [store.intake_row(make_event_id(2, n + 1), e, None) for n, e in enumerate(events)]
    copy_sql = sql.SQL("COPY mc.rt_event ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, store.INTAKE_COLUMNS))
    )
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        with conn.cursor().copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return total / (time.perf_counter() - start)


def measure(report: Report, databases: Databases) -> None:
    api_dsn = databases.create("api", "execution")
    floor_dsn = databases.create("floor", "execution")
    with api_client(api_dsn) as client:
        batch_1k = bench_batch_api(client, 1_000, EVENTS)
        batch_10k = bench_batch_api(client, 10_000, EVENTS)
    assert count(api_dsn, "batch") == 2 * EVENTS + 1, "batch API lost or duplicated events"
    floor = bench_bare_copy(floor_dsn, EVENTS)
    assert count(floor_dsn, "rt") == EVENTS

    out = report.add
    out(f"intake benchmark: batch API vs bare COPY ({EVENTS} events per measurement)")
    out(f"  bare COPY floor           {floor:10.0f} events/s")
    for label, rate in (("1,000/request ", batch_1k), ("10,000/request", batch_10k)):
        out(f"  batch API, {label} {rate:10.0f} events/s   {ratio('API/COPY', rate / floor, '>= 0.30')}")


if __name__ == "__main__":
    run(measure, PREFIX)
