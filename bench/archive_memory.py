"""Archiving: (d) peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) of a fresh child process running
``archive_interval`` for N/5 and for N rows, next to a baseline child that only imports and
connects   [target: bounded, the N peak no larger than the N/5 one plus noise].

On the dataset of ``bench/harness/archive.py``, each run into empty archive tables and checked.

    PYTHONPATH=plugins:. .venv/bin/python bench/archive_memory.py   # make bench: all of them
    MC_BENCH_DSN=...                # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_ARCHIVE_EVENTS=...     # events N, each with one delivery log (default 500000)
    MC_BENCH_SCALE=...              # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

from bench.harness.archive import EVENTS, SPREAD, check_archive, create_dataset, empty_archive, run_child
from bench.harness.databases import Databases
from bench.harness.report import Report, run

PREFIX = "mc_bench_archive_memory_"


def measure(report: Report, databases: Databases) -> None:
    dataset = create_dataset(databases)
    start, end = dataset.start, dataset.end
    small_end = dataset.base + SPREAD / 5  # the first fifth of the rows
    empty_archive(dataset)
    full = run_child(dataset, "run", start, end)
    assert full["from_beginning"], full
    assert (full["events"], full["logs"]) == (EVENTS, EVENTS), full
    assert sum(check_archive(dataset, end, "archive_interval")) == 2 * EVENTS
    baseline = run_child(dataset, "baseline", start, end)
    empty_archive(dataset)
    small = run_child(dataset, "run", start, small_end)
    small_events, small_logs = check_archive(dataset, small_end, "archive_interval N/5")
    assert (small["events"], small["logs"]) == (small_events, small_logs), small
    assert small_events < EVENTS, small

    rows = 2 * EVENTS
    for line in dataset.heading():
        report.add(line)
    report.add("(d) peak RSS (ru_maxrss) of the archiving child process")
    report.add(f"      baseline (import + connect only)          {baseline['maxrss_kib'] / 1024:6.1f} MB")
    report.add(
        f"      {small_events + small_logs:>8} rows (N/5) in {small['seconds']:6.2f} s"
        f"       {small['maxrss_kib'] / 1024:6.1f} MB"
    )
    report.add(
        f"      {rows:>8} rows (N)   in {full['seconds']:6.2f} s       {full['maxrss_kib'] / 1024:6.1f} MB"
        f"   (N - N/5: {(full['maxrss_kib'] - small['maxrss_kib']) / 1024:+.1f} MB)   [target: bounded]"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
