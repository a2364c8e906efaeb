"""What the archiving benchmarks share: the dataset, the checks of an archive against its source,
and ``archive_interval`` run in a fresh child process (``python -m bench.harness.archive``).

Two fresh databases on the same PostgreSQL server, an execution database and a control database,
and one dataset generated set-based in the execution database (``INSERT ... SELECT generate_series``):
``N`` final events (20% rt, 80% batch; ids ``(1 << 56) | n``; realistic columns with a ~200-byte
``ctx``; ``last_modified`` spread over one hour) and one delivery log each. Every run is checked
before any figure is printed: the archive's row counts equal the source's, and an md5 over a few
columns of every row, in id order, matches the source.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from bench.harness import env
from bench.harness.databases import Databases

EVENTS = env.size("MC_BENCH_ARCHIVE_EVENTS", 500_000)  # events N, each with one delivery log
INSTANCE, INSTANCE_ID = "bench", 1
SPREAD = timedelta(hours=1)  # last_modified of the N events spans one hour, 3 hours ago
RT_EVERY = 5  # event n is real-time when n % 5 == 0 (20%), batch otherwise

# --- the dataset ---------------------------------------------------------------------------------

# Event n, last modified at base + (n - 1) * step: 96% Sent, 2% Ignored, 2% Failed, processed a
# minute after creation, its delivery log written half a second before the status copy.
EVENTS_SQL = """
INSERT INTO {table} (
    id, event_type, channel, email, external_id, language, country, origin, ctx, idempotency_key,
    created, status, template_id, template_version, errors, next_try, processed, last_modified)
SELECT (1::bigint << 56) | n,
       (ARRAY['ORDER_CONFIRMATION', 'PASSWORD_RESET', 'SHIPPING_NOTIFICATION'])[1 + mod(n, 3)],
       0, 'customer' || n || '@example.com', 'order-' || n, 'en', 'FR', 'shop-web',
       jsonb_build_object(
           'firstName', 'Ann', 'lastName', 'Martin', 'orderId', 'A-' || n,
           'total', round(mod(n, 1000) * 1.37 + 9.99, 2), 'currency', 'EUR',
           'lines', jsonb_build_array(
               jsonb_build_object('sku', 'SKU-' || mod(n, 997), 'qty', 1 + mod(n, 3), 'price', 9.99),
               jsonb_build_object('sku', 'SKU-' || mod(n + 1, 997), 'qty', 1, 'price', 24.5))),
       'order-' || n, lm - interval '1 minute',
       CASE WHEN mod(n, 50) = 0 THEN 4 WHEN mod(n, 50) = 1 THEN 3 ELSE 2 END,
       1 + mod(n, 3), 1, (mod(n, 50) = 0)::int, NULL, lm, lm
FROM (SELECT n, %(base)s::timestamptz + (n - 1) * %(step)s * interval '1 second' AS lm
      FROM generate_series(1, %(n)s) AS n) AS g
WHERE (mod(n, {every}) = 0) = %(rt)s
"""
LOGS_SQL = """
INSERT INTO mc.delivery_log (
    id, event_id, queue, status, channel, address, template_id, template_version, message_id,
    provider_answer, error, tries, created)
SELECT n, (1::bigint << 56) | n, CASE WHEN mod(n, {every}) = 0 THEN 'rt' ELSE 'batch' END,
       CASE WHEN mod(n, 50) = 0 THEN 4 WHEN mod(n, 50) = 1 THEN 3 ELSE 2 END,
       0, 'customer' || n || '@example.com', 1 + mod(n, 3), 1, '<' || n || '.bench@mail.example.com>',
       CASE WHEN mod(n, 50) = 0 THEN '550 5.1.1 user unknown' WHEN mod(n, 50) = 1 THEN NULL
            ELSE '250 2.0.0 Ok: queued as ' || upper(to_hex(n)) END,
       CASE WHEN mod(n, 50) = 0 THEN 'permanent failure' WHEN mod(n, 50) = 1 THEN 'address in quarantine' END,
       1 + (mod(n, 50) = 0)::int,
       %(base)s::timestamptz + (n - 1) * %(step)s * interval '1 second' - interval '0.5 second'
FROM generate_series(1, %(n)s) AS n
"""


@dataclass(frozen=True)
class Dataset:
    """The two databases and what the figures say of the dataset."""

    exec_dsn: str
    control_dsn: str
    base: datetime  # the first last_modified, 3 hours ago
    setup_seconds: float
    rt: int  # real-time events of the N
    ctx_bytes: float  # mean size of a ctx

    @property
    def start(self) -> datetime:
        """Start of an interval covering every row."""
        return self.base - timedelta(minutes=1)

    @property
    def end(self) -> datetime:
        """End of an interval covering every row."""
        return self.base + SPREAD + timedelta(minutes=1)

    def heading(self) -> list[str]:
        rows = 2 * EVENTS
        return [
            f"archiving benchmark: {EVENTS} final events ({self.rt} rt, {EVENTS - self.rt} batch;"
            f" ctx ~{self.ctx_bytes:.0f} bytes) + {EVENTS} delivery logs = {rows} rows,"
            " execution DB -> control DB on one server",
            f"      (setup: generated set-based + VACUUM in {self.setup_seconds:.1f} s;"
            " every run checked: counts and md5)",
        ]


def create_dataset(databases: Databases) -> Dataset:
    """The execution and control databases, the dataset generated in the first (set-based)."""
    exec_dsn = databases.create("exec", "execution")
    control_dsn = databases.create("control", "control")
    start = time.perf_counter()
    with psycopg.connect(exec_dsn, autocommit=True) as conn:
        base = _one(conn, "SELECT date_trunc('second', now() - interval '3 hours')")
        params = {"base": base, "step": SPREAD.total_seconds() / EVENTS, "n": EVENTS}
        for table, rt in (("mc.rt_event", True), ("mc.batch_event", False)):
            conn.execute(EVENTS_SQL.format(table=table, every=RT_EVERY), {**params, "rt": rt})
        conn.execute(LOGS_SQL.format(every=RT_EVERY), params)
        conn.execute("SELECT setval('mc.delivery_log_id_seq', %s)", (EVENTS,))
        # Hint bits and visibility map set, statistics fresh: neither measurement pays for them.
        for table in ("mc.rt_event", "mc.batch_event", "mc.delivery_log"):
            conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
        setup = time.perf_counter() - start
        ctx_bytes = _one(conn, "SELECT avg(length(ctx::text)) FROM mc.batch_event")
        rt = _one(conn, "SELECT count(*) FROM mc.rt_event")
    return Dataset(exec_dsn, control_dsn, base, setup, rt, float(ctx_bytes))


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return row[0]


def empty_archive(dataset: Dataset) -> None:
    """Archive tables and archiving state of the control database emptied, and the execution
    database's archive mark too: the next run is an instance's first, from the beginning."""
    with psycopg.connect(dataset.control_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE mc.event_histo, mc.delivery_log_histo, mc.archive_state")
    with psycopg.connect(dataset.exec_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM mc.archive_mark")


# --- checks: counts and md5 over a few columns, in id order ---------------------------------------

EVENT_PRINT = (
    "id, queue, event_type, status, email, md5(ctx::text), template_id, errors,"
    " extract(epoch FROM created), extract(epoch FROM processed), extract(epoch FROM last_modified)"
)
LOG_PRINT = (
    "id, event_id, queue, status, address, message_id, provider_answer, error, tries,"
    " extract(epoch FROM created)"
)
SOURCE_EVENTS = (
    "(SELECT 'rt' AS queue, * FROM mc.rt_event UNION ALL SELECT 'batch', * FROM mc.batch_event) AS e"
    " WHERE last_modified < %(end)s"
)
SOURCE_LOGS = "mc.delivery_log WHERE created < %(end)s"
ARCHIVE_EVENTS = f"mc.event_histo WHERE instance_id = {INSTANCE_ID}"
ARCHIVE_LOGS = f"mc.delivery_log_histo WHERE instance_id = {INSTANCE_ID}"


def fingerprint(conn: psycopg.Connection[Any], columns: str, source: str, end: datetime) -> tuple[int, str]:
    row = conn.execute(
        f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), ''))"
        f" FROM (SELECT {columns} FROM {source}) AS t",
        {"end": end},
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def check_archive(dataset: Dataset, end: datetime, what: str) -> tuple[int, int]:
    """Assert the archive holds exactly the source rows of ``[-inf, end)``; (events, logs)."""
    with (
        psycopg.connect(dataset.exec_dsn, autocommit=True) as src,
        psycopg.connect(dataset.control_dsn, autocommit=True) as dst,
    ):
        events = fingerprint(src, EVENT_PRINT, SOURCE_EVENTS, end)
        logs = fingerprint(src, LOG_PRINT, SOURCE_LOGS, end)
        archived_events = fingerprint(dst, EVENT_PRINT, ARCHIVE_EVENTS, end)
        archived_logs = fingerprint(dst, LOG_PRINT, ARCHIVE_LOGS, end)
    assert archived_events[0] == events[0], f"{what}: {archived_events[0]} events archived of {events[0]}"
    assert archived_logs[0] == logs[0], f"{what}: {archived_logs[0]} delivery logs archived of {logs[0]}"
    assert archived_events[1] == events[1], f"{what}: archived events differ from the source (md5)"
    assert archived_logs[1] == logs[1], f"{what}: archived delivery logs differ from the source (md5)"
    return events[0], logs[0]


# --- archive_interval in a fresh child process -------------------------------------------------------


def run_child(dataset: Dataset, mode: str, start: datetime, end: datetime) -> dict[str, Any]:
    """``archive_interval`` over ``[start, end)`` (overlap 0) in a fresh interpreter (``mode``
    ``run``), or only its imports and connections (``baseline``): its figures, with the child's
    own peak RSS (``maxrss_kib``)."""
    args = [dataset.exec_dsn, dataset.control_dsn, mode, start.isoformat(), end.isoformat()]
    return env.run_json_child("-m", "bench.harness.archive", "--archive-child", *args)


def _archive_child(exec_dsn: str, control_dsn: str, mode: str, start: str, end: str) -> None:
    """Run in a fresh interpreter: ``baseline`` only imports and connects; ``run`` archives once."""
    env.quiet_logging()
    from messagecenter.control.archiving import archive_interval

    result: dict[str, Any] = {}
    with psycopg.connect(exec_dsn) as exec_conn, psycopg.connect(control_dsn) as control_conn:
        for conn in (exec_conn, control_conn):
            conn.execute("SELECT 1")
            conn.rollback()
        if mode == "run":
            began = time.perf_counter()
            run = archive_interval(
                exec_conn,
                control_conn,
                instance=INSTANCE,
                instance_id=INSTANCE_ID,
                start=datetime.fromisoformat(start),
                end=datetime.fromisoformat(end),
                overlap=timedelta(0),
                open_writer_timeout=30,
            )
            result = {
                "events": run.events,
                "logs": run.logs,
                "from_beginning": run.low is None,
                "seconds": time.perf_counter() - began,
            }
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--archive-child":
        _archive_child(*sys.argv[2:])
