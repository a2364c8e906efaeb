"""Feedback: the quarantine check of a delivery chunk with 1M quarantined addresses, against the
chunk's time.

The pipeline's e-mail mix (``bench/harness/pipeline.py``), pending, in two fresh databases: (q) one
whose ``mc.quarantine`` holds 1,000,000 quarantined addresses (status 2), among them every other
address of the batch, so half of each chunk's addresses are quarantined; (e) one with an empty
quarantine. Each is split, linked, then delivered with ``deliver_shard`` through the null transport
(one process, shard after shard, chunks of ``deliver_chunk``), the chunk's quarantine lookup (the
``quarantined`` statement, ``_quarantine_statuses``) timed where it runs.

Printed: the share of the delivery time (q) spends in the lookup, against the 10% target; next to
it the same delivery with the empty quarantine (e) (which sends twice as many messages: (q) ignores
half), and the statement alone on each chunk's addresses (p50/p95 per chunk).

    PYTHONPATH=plugins:. .venv/bin/python bench/feedback_quarantine_check.py   # make bench: all of them
    MC_BENCH_DSN=...                 # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_QUARANTINE_ROWS=...     # quarantined addresses of (q) (default 1000000)
    MC_BENCH_QUARANTINE_EVENTS=...   # events delivered in (q) and (e) (default 20000)
    MC_BENCH_SCALE=...               # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.feedback import log_counts
from bench.harness.pipeline import HEADING, create_database, insert_pending, null_transport
from bench.harness.report import Report, count_label, percentiles, ratio, run
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings
from messagecenter.db.queries import query
from messagecenter.execution import deliver

PREFIX = "mc_bench_feedback_quarantine_"
ROWS = env.size("MC_BENCH_QUARANTINE_ROWS", 1_000_000)
EVENTS = env.size("MC_BENCH_QUARANTINE_EVENTS", 20_000, minimum=2)
SETTINGS = ProcessingSettings(max_events_per_run=max(EVENTS, ProcessingSettings.max_events_per_run))
IGNORED = 3
QUARANTINE = 2
EMAIL = 0
ROWS_LABEL = f"{ROWS / 1_000_000:g}M" if ROWS >= 1_000_000 else count_label(ROWS)

# Every other address of the batch (the mix's e-mail addresses, as the logs store them), then
# addresses nobody sends to (random, as real ones land in the index) up to ROWS.
FILL_QUARANTINE = """
INSERT INTO mc.quarantine (channel, address, status, reason, failure_reason, errors, last_error, source)
SELECT 0, 'customer' || g || '@example.com', 2, 'User unknown: 550 5.1.1', 1, 1, now(), 'failed:mailbox'
FROM generate_series(0, %(events)s - 1, 2) AS g
UNION ALL
SELECT 0, md5(g::text) || '@' || (ARRAY['example.org', 'example.net', 'mail.test'])[1 + g %% 3], 2,
       'User unknown: 550 5.1.1', 1, 1, now(), 'failed:mailbox'
FROM generate_series(1, %(others)s) AS g
"""
QUARANTINE_SIZE = "SELECT count(*) FROM mc.quarantine WHERE status = 2"
CHUNK_ADDRESSES = "SELECT lower(email) FROM mc.batch_event ORDER BY id"


@dataclass
class Lookups:
    """The chunk lookups of one delivery: seconds each."""

    seconds: list[float] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.seconds)


@contextmanager
def timed_lookups() -> Iterator[Lookups]:
    """Time every call of the chunk's quarantine lookup where the delivery makes it."""
    lookups = Lookups()
    original = deliver._quarantine_statuses

    def lookup(
        conn: psycopg.Connection[Any], channel: int, addresses: Iterable[str | None]
    ) -> dict[str, int]:
        start = time.perf_counter()
        found = original(conn, channel, addresses)
        lookups.seconds.append(time.perf_counter() - start)
        return found

    deliver._quarantine_statuses = lookup
    try:
        yield lookups
    finally:
        deliver._quarantine_statuses = original


@dataclass
class Delivery:
    seconds: float
    lookups: Lookups
    counts: dict[str, int]

    @property
    def chunks(self) -> int:
        return len(self.lookups.seconds)

    @property
    def share(self) -> float:
        return self.lookups.total / self.seconds


def prepare(databases: Databases, name: str, quarantined: int) -> str:
    """A database with the batch pending, and ``quarantined`` addresses in quarantine (0: none)."""
    dsn = create_database(databases, name)
    insert_pending(dsn, "batch", EVENTS)
    if quarantined:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(FILL_QUARANTINE, {"events": EVENTS, "others": quarantined - (EVENTS + 1) // 2})
            conn.execute("VACUUM ANALYZE mc.quarantine")
    return dsn


def bench_deliver(dsn: str) -> Delivery:
    """Split and link (not timed), then deliver every shard in turn (timed, lookups timed inside)."""
    counts = execution.Counts()
    with psycopg.connect(dsn) as conn:
        shards = execution.split_queue(conn, "batch", SETTINGS)
        for shard in shards:
            execution.link_templates(conn, shard)
        with timed_lookups() as lookups:
            start = time.perf_counter()
            for shard in shards:
                counts.add(execution.deliver_shard(conn, shard, SETTINGS, transport_for=null_transport))
            seconds = time.perf_counter() - start
    return Delivery(seconds, lookups, counts.summary())


def statement_alone(dsn: str) -> list[float]:
    """Seconds of the ``quarantined`` statement on each chunk's addresses, one after the other."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        addresses = [r[0] for r in conn.execute(CHUNK_ADDRESSES)]
        chunk = SETTINGS.deliver_chunk
        seconds = []
        for low in range(0, len(addresses), chunk):
            params = {"channel": EMAIL, "addresses": addresses[low : low + chunk]}
            start = time.perf_counter()
            conn.execute(query("quarantined"), params).fetchall()
            seconds.append(time.perf_counter() - start)
    return seconds


def measure(report: Report, databases: Databases) -> None:
    half = (EVENTS + 1) // 2
    with report.section("setup"):
        full_dsn = prepare(databases, "full", ROWS)
        empty_dsn = prepare(databases, "empty", 0)
        with psycopg.connect(full_dsn, autocommit=True) as conn:
            row = conn.execute(QUARANTINE_SIZE).fetchone()
        assert row is not None
        assert row[0] == ROWS, row
    with report.section(f"(q) {ROWS_LABEL} quarantined"):
        full = bench_deliver(full_dsn)
        assert (full.counts["sent"], full.counts["ignored"]) == (EVENTS - half, half), full.counts
        assert log_counts(full_dsn) == {(2, None): EVENTS - half, (IGNORED, None): half}
        full_alone = statement_alone(full_dsn)
    with report.section("(e) empty quarantine"):
        empty = bench_deliver(empty_dsn)
        assert (empty.counts["sent"], empty.counts["ignored"]) == (EVENTS, 0), empty.counts
        assert log_counts(empty_dsn) == {(2, None): EVENTS}
        empty_alone = statement_alone(empty_dsn)

    def per_chunk(delivery: Delivery) -> str:
        return (
            f"{delivery.seconds:6.2f} s = {delivery.seconds / delivery.chunks * 1000:6.1f} ms per chunk,"
            f" lookup {delivery.lookups.total * 1000:7.1f} ms in all ="
            f" {delivery.lookups.total / delivery.chunks * 1000:5.2f} ms per chunk"
            f" ({delivery.share * 100:.2f}% of the delivery)"
        )

    def alone(seconds: list[float]) -> str:
        ms = [s * 1000 for s in seconds]
        p50, p95, _ = percentiles(ms) if len(ms) > 1 else (ms[0], ms[0], ms[0])
        return f"p50 {p50:.2f} ms, p95 {p95:.2f} ms"

    out = report.add
    out(HEADING)
    out(
        f"quarantine check: {EVENTS} batch e-mail events delivered through the null transport in one"
        f" process, {full.chunks} chunks of up to {SETTINGS.deliver_chunk}; each lookup timed in place"
    )
    out(
        f"(q) {ROWS_LABEL} addresses quarantined, half of each chunk's among them"
        f" ({full.counts['sent']} sent, {full.counts['ignored']} ignored): {per_chunk(full)}"
    )
    out(f"(e) empty quarantine ({empty.counts['sent']} sent): {per_chunk(empty)}")
    out(
        f"      the statement alone per chunk of {SETTINGS.deliver_chunk} addresses:"
        f" {alone(full_alone)} with {ROWS_LABEL} rows, {alone(empty_alone)} with none"
    )
    out(f"      {ratio('(q) lookup / (q) delivery', full.share * 100, '<= 10%', unit='%')}")
    next_to_e = full.lookups.total / empty.seconds * 100
    out(f"      {ratio('(q) lookups / (e) delivery', next_to_e, 'side by side, no target', unit='%')}")


if __name__ == "__main__":
    run(measure, PREFIX)
