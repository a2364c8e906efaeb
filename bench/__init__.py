"""Benchmarks, not tests: each module measures one figure next to its floor, in one run.

``python -m bench`` (what ``make bench`` runs) runs them all, each in its own process;
``python bench/<module>.py`` runs one. Their shared support (databases, sinks, environment, report)
is ``bench.harness``.
"""
