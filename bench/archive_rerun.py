"""Archiving: (c) a rerun of ``archive_interval`` over an interval already archived: idempotent
(0 rows changed, the archive still exact), and how long re-reading the interval takes.

On the dataset of ``bench/harness/archive.py``; the first run, into empty archive tables, is checked
but not reported (``bench/archive_vs_copy_floor.py`` measures it).

    PYTHONPATH=plugins:. .venv/bin/python bench/archive_rerun.py   # make bench: all of them
    MC_BENCH_DSN=...                # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_ARCHIVE_EVENTS=...     # events N, each with one delivery log (default 500000)
    MC_BENCH_SCALE=...              # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

from bench.harness.archive import EVENTS, check_archive, create_dataset, empty_archive, run_child
from bench.harness.databases import Databases
from bench.harness.report import Report, run

PREFIX = "mc_bench_archive_rerun_"


def measure(report: Report, databases: Databases) -> None:
    dataset = create_dataset(databases)
    empty_archive(dataset)
    first = run_child(dataset, "run", dataset.start, dataset.end)
    assert first["from_beginning"], first
    assert (first["events"], first["logs"]) == (EVENTS, EVENTS), first
    assert sum(check_archive(dataset, dataset.end, "archive_interval")) == 2 * EVENTS
    # The rerun over the same interval: nothing changes, the archive is still exact.
    rerun = run_child(dataset, "run", dataset.start, dataset.end)
    assert not rerun["from_beginning"], rerun
    assert (rerun["events"], rerun["logs"]) == (0, 0), f"the rerun changed rows: {rerun}"
    check_archive(dataset, dataset.end, "rerun")

    rows = 2 * EVENTS
    for line in dataset.heading():
        report.add(line)
    report.add(
        f"(c) rerun over the same interval: {rerun['events']} events, {rerun['logs']} logs changed"
        f" in {rerun['seconds']:.2f} s ({rows / rerun['seconds']:.0f} rows/s re-read)"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
