"""How every benchmark reports: its lines printed together once every check passed, ratios and
percentiles in one format, the time each section took, and the wall time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from bench.harness import env
from bench.harness.databases import Databases


class Report:
    """The figures of one benchmark, printed by :func:`run` at the end (never a figure whose checks
    have not all passed)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.timings: dict[str, float] = {}

    def add(self, line: str) -> None:
        self.lines.append(line)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the block as section ``name`` (printed after the figures)."""
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start

    def print(self, wall_seconds: float) -> None:
        if env.SCALE != 1:
            print(f"(MC_BENCH_SCALE={env.SCALE:g}: every size scaled; a smoke run, not a measurement)")
        print("\n".join(self.lines))
        if self.timings:
            print("  section times: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        print(f"  total wall time {wall_seconds:.1f} s")


def ratio(name: str, value: float, target: str, digits: int = 2, unit: str = "x") -> str:
    """``ratio <name> <value>x   [target >= 0.5]``: how every benchmark prints a ratio (a target
    that is no comparison reads ``[target: <target>]``)."""
    bound = f" {target}" if target[:1] in "<>=" else f": {target}"
    return f"ratio {name + ' ' if name else ''}{value:.{digits}f}{unit}   [target{bound}]"


def percentiles(
    values: list[float], method: Literal["inclusive", "exclusive"] = "inclusive"
) -> tuple[float, float, float]:
    """p50, p95 and p99 of ``values``."""
    q = statistics.quantiles(values, n=100, method=method)
    return q[49], q[94], q[98]


def count_label(n: int) -> str:
    """``10k`` for 10,000 (a size in a figure's label)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def run(measure: Callable[[Report, Databases], None], prefix: str) -> None:
    """Run one benchmark: ``measure`` fills the report using databases named ``<prefix>...`` (all
    dropped at the end, whatever happens), then the report is printed."""
    env.quiet_logging()
    env.isolate_airflow()
    report = Report()
    wall = time.perf_counter()
    with Databases(prefix) as databases:
        measure(report, databases)
    report.print(time.perf_counter() - wall)
