"""Archiving: (a) ``archive_interval`` next to (b) the bare binary COPY floor, in one run.

On the dataset of ``bench/harness/archive.py`` (N final events and N delivery logs, execution DB ->
control DB on one server), with the target (2 cores) in brackets:

(a) ours: ``archive_interval`` (overlap 0, an interval covering every row; the first run of the
    instance reads from the beginning) in a fresh child process, into empty archive tables:
    binary COPY out of the execution database into temp stage tables on control, then the upserts
    into ``mc.event_histo`` / ``mc.delivery_log_histo``; rows/s = (events + logs) / seconds;
(b) the floor: the cheapest way to move the same rows into the same (empty, indexed) archive tables,
    binary ``COPY (SELECT ...) TO STDOUT`` on the execution database piped straight into
    ``COPY mc.event_histo / mc.delivery_log_histo FROM STDIN`` on control: no stage, no upsert;
    printed as the ratio (a)/(b)   [target >= 0.5].

    PYTHONPATH=plugins:. .venv/bin/python bench/archive_vs_copy_floor.py   # make bench: all of them
    MC_BENCH_DSN=...                # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_ARCHIVE_EVENTS=...     # events N, each with one delivery log (default 500000)
    MC_BENCH_ARCHIVE_REPEATS=...    # runs of (a) and (b), the best of each is kept (default 1)
    MC_BENCH_SCALE=...              # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import os
import time

import psycopg

from bench.harness.archive import (
    EVENTS,
    INSTANCE_ID,
    Dataset,
    check_archive,
    create_dataset,
    empty_archive,
    run_child,
)
from bench.harness.databases import Databases
from bench.harness.report import Report, ratio, run

PREFIX = "mc_bench_archive_floor_"
REPEATS = max(1, int(os.environ.get("MC_BENCH_ARCHIVE_REPEATS", "1")))

# The same columns the archive tables receive, straight from the source tables (no filter: every
# row is in the interval), into the archive tables themselves.
FLOOR_EVENT_COLUMNS = (
    "id, instance_id, queue, event_type, channel, email, mobile_phone, push_token, external_id,"
    " language, country, origin, ctx, created, scheduled, status, template_id, template_version,"
    " errors, processed, last_modified"
)
FLOOR_EVENT_SELECT = (
    "SELECT id, {instance_id}::smallint, '{queue}'::text, event_type, channel, email, mobile_phone,"
    " push_token, external_id, language, country, origin, ctx, created, scheduled, status, template_id,"
    " template_version, errors, processed, last_modified FROM mc.{queue}_event"
)
FLOOR_LOG_COLUMNS = (
    "instance_id, id, event_id, queue, status, channel, address, template_id, template_version,"
    " message_id, provider_answer, error, tries, created"
)
FLOOR_LOG_SELECT = (
    "SELECT {instance_id}::smallint, id, event_id, queue, status, channel, address, template_id,"
    " template_version, message_id, provider_answer, error, tries, created FROM mc.delivery_log"
)


def floor_streams() -> list[tuple[str, str]]:
    events = [
        (
            FLOOR_EVENT_SELECT.format(instance_id=INSTANCE_ID, queue=queue),
            f"mc.event_histo ({FLOOR_EVENT_COLUMNS})",
        )
        for queue in ("rt", "batch")
    ]
    return [
        *events,
        (FLOOR_LOG_SELECT.format(instance_id=INSTANCE_ID), f"mc.delivery_log_histo ({FLOOR_LOG_COLUMNS})"),
    ]


def bench_floor(exec_dsn: str, control_dsn: str) -> float:
    """Seconds to pipe every row, binary COPY to binary COPY, into the empty archive tables."""
    with psycopg.connect(exec_dsn) as src, psycopg.connect(control_dsn) as dst:
        start = time.perf_counter()
        for select, target in floor_streams():
            copy_out = f"COPY ({select}) TO STDOUT (FORMAT BINARY)"
            copy_in = f"COPY {target} FROM STDIN (FORMAT BINARY)"
            with src.cursor().copy(copy_out) as out, dst.cursor().copy(copy_in) as into:
                for buffer in out:
                    into.write(buffer)
        dst.commit()
        src.commit()
        return time.perf_counter() - start


def measure(report: Report, databases: Databases) -> None:
    dataset: Dataset = create_dataset(databases)
    # (b) the floor, then (a) ours, each on empty archive tables; the best of REPEATS runs.
    floor_seconds, ours_seconds = [], []
    for _ in range(REPEATS):
        empty_archive(dataset)
        floor_seconds.append(bench_floor(dataset.exec_dsn, dataset.control_dsn))
        floor_rows = sum(check_archive(dataset, dataset.end, "floor"))
        assert floor_rows == 2 * EVENTS, f"the floor moved {floor_rows} rows of {2 * EVENTS}"
    for _ in range(REPEATS):
        empty_archive(dataset)
        ours = run_child(dataset, "run", dataset.start, dataset.end)
        assert ours["from_beginning"], ours
        assert (ours["events"], ours["logs"]) == (EVENTS, EVENTS), ours
        assert sum(check_archive(dataset, dataset.end, "archive_interval")) == 2 * EVENTS
        ours_seconds.append(ours["seconds"])

    rows = 2 * EVENTS
    floor_rate = rows / min(floor_seconds)
    ours_rate = rows / min(ours_seconds)
    best = f" (best of {REPEATS})" if REPEATS > 1 else ""
    for line in dataset.heading():
        report.add(line)
    report.add(f"(a) archive_interval (fresh child process, empty archive){best}")
    report.add(f"      stage COPY + upserts         {min(ours_seconds):6.2f} s  {ours_rate:10.0f} rows/s")
    report.add(f"(b) floor: binary COPY TO STDOUT -> COPY FROM STDIN into the archive tables{best}")
    report.add(f"      no stage, no upsert          {min(floor_seconds):6.2f} s  {floor_rate:10.0f} rows/s")
    report.add(f"      {ratio('(a)/(b)', ours_rate / floor_rate, '>= 0.5')}")


if __name__ == "__main__":
    run(measure, PREFIX)
