"""Archiving benchmark: ``archive_interval`` next to the bare COPY floor, in one run.

Two fresh databases on the same PostgreSQL server, an execution database and a control database,
and one dataset generated set-based in the execution database (``INSERT ... SELECT generate_series``):
``N`` final events (20% rt, 80% batch; ids ``(1 << 56) | n``; realistic columns with a ~200-byte
``ctx``; ``last_modified`` spread over one hour) and one delivery log each. Every figure is measured
in this run between those two databases, with the target (2 cores) in brackets:

(a) ours: ``archive_interval`` (overlap 0, an interval covering every row; the first run of the
    instance reads from the beginning) in a fresh child process, into empty archive tables:
    binary COPY out of the execution database into temp stage tables on control, then the upserts
    into ``mc.event_histo`` / ``mc.delivery_log_histo``; rows/s = (events + logs) / seconds;
(b) the floor: the cheapest way to move the same rows into the same (empty, indexed) archive tables,
    binary ``COPY (SELECT ...) TO STDOUT`` on the execution database piped straight into
    ``COPY mc.event_histo / mc.delivery_log_histo FROM STDIN`` on control: no stage, no upsert;
    printed as the ratio (a)/(b)   [target >= 0.5];
(c) a rerun of ``archive_interval`` over the same interval: idempotent, 0 rows changed; its time;
(d) peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) of the child process running ``archive_interval``
    for N/5 and for N rows, next to a baseline child that only imports and connects   [target:
    bounded, the N peak no larger than the N/5 one plus noise].

Before any ratio is printed, every run is checked: the archive's row counts equal the source's, and
an md5 over a few columns of every row, in id order, matches the source.

    make bench            # or: PYTHONPATH=plugins .venv/bin/python bench/archive.py
    MC_BENCH_DSN=...                # admin DSN of the server to use (default: local 127.0.0.1:5432)
    MC_BENCH_ARCHIVE_EVENTS=...     # events N, each with one delivery log (default 500000)
    MC_BENCH_ARCHIVE_REPEATS=...    # runs of (a) and (b), the best of each is kept (default 1)
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from databases import drop_databases, migrated_database  # noqa: E402
from messagecenter.db import schema  # noqa: E402

EVENTS = int(os.environ.get("MC_BENCH_ARCHIVE_EVENTS", "500000"))
REPEATS = max(1, int(os.environ.get("MC_BENCH_ARCHIVE_REPEATS", "1")))
PREFIX = "mc_bench_archive_"
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


def check_archive(exec_dsn: str, control_dsn: str, end: datetime, what: str) -> tuple[int, int]:
    """Assert the archive holds exactly the source rows of ``[-inf, end)``; (events, logs)."""
    with (
        psycopg.connect(exec_dsn, autocommit=True) as src,
        psycopg.connect(control_dsn, autocommit=True) as dst,
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


# --- databases -----------------------------------------------------------------------------------


def fresh_database(name: str, component: schema.Component) -> str:
    return migrated_database(PREFIX + name, component)


def drop_bench_databases() -> None:
    drop_databases(PREFIX)


def generate(exec_dsn: str, events: int) -> tuple[datetime, float]:
    """The dataset, set-based; (base, seconds). ``base`` is the first last_modified, 3 hours ago."""
    start = time.perf_counter()
    with psycopg.connect(exec_dsn, autocommit=True) as conn:
        base = conn.execute("SELECT date_trunc('second', now() - interval '3 hours')").fetchone()[0]  # type: ignore[index]
        params = {"base": base, "step": SPREAD.total_seconds() / events, "n": events}
        for table, rt in (("mc.rt_event", True), ("mc.batch_event", False)):
            conn.execute(EVENTS_SQL.format(table=table, every=RT_EVERY), {**params, "rt": rt})  # type: ignore[arg-type]
        conn.execute(LOGS_SQL.format(every=RT_EVERY), params)  # type: ignore[arg-type]
        conn.execute("SELECT setval('mc.delivery_log_id_seq', %s)", (events,))
        # Hint bits and visibility map set, statistics fresh: neither measurement pays for them.
        for table in ("mc.rt_event", "mc.batch_event", "mc.delivery_log"):
            conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
    return base, time.perf_counter() - start


def empty_archive(control_dsn: str) -> None:
    with psycopg.connect(control_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE mc.event_histo, mc.delivery_log_histo, mc.archive_state")


def empty_mark(exec_dsn: str) -> None:
    with psycopg.connect(exec_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM mc.archive_mark")


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


# --- (b) the floor -------------------------------------------------------------------------------

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


# --- (a), (c), (d): archive_interval in a fresh child process ----------------------------------------


def _archive_child(exec_dsn: str, control_dsn: str, mode: str, start: str, end: str) -> None:
    """Run in a fresh interpreter: ``baseline`` only imports and connects; ``run`` archives once."""
    quiet_logging()
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


def run_child(exec_dsn: str, control_dsn: str, mode: str, start: datetime, end: datetime) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    args = [sys.executable, __file__, "--archive-child", exec_dsn, control_dsn, mode]
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.run([*args, start.isoformat(), end.isoformat()], stdout=out, env=env, check=False)
        assert proc.returncode == 0, f"archive child ({mode}) exited with {proc.returncode}"
        out.seek(0)
        return json.loads(out.read())


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    quiet_logging()
    wall = time.perf_counter()
    try:
        lines = run_all()
    finally:
        drop_bench_databases()
    print("\n".join(lines))
    print(f"  total wall time {time.perf_counter() - wall:.1f} s")


def run_all() -> list[str]:
    exec_dsn = fresh_database("exec", "execution")
    control_dsn = fresh_database("control", "control")
    base, setup = generate(exec_dsn, EVENTS)
    start, end = base - timedelta(minutes=1), base + SPREAD + timedelta(minutes=1)
    small_end = base + SPREAD / 5  # the first fifth of the rows
    with psycopg.connect(exec_dsn, autocommit=True) as conn:
        ctx_bytes = conn.execute("SELECT avg(length(ctx::text)) FROM mc.batch_event").fetchone()[0]  # type: ignore[index]
        rt = conn.execute("SELECT count(*) FROM mc.rt_event").fetchone()[0]  # type: ignore[index]

    # (b) the floor, then (a) ours, each on empty archive tables; the best of REPEATS runs.
    floor_seconds, ours_seconds = [], []
    for _ in range(REPEATS):
        empty_archive(control_dsn)
        floor_seconds.append(bench_floor(exec_dsn, control_dsn))
        floor_rows = sum(check_archive(exec_dsn, control_dsn, end, "floor"))
        assert floor_rows == 2 * EVENTS, f"the floor moved {floor_rows} rows of {2 * EVENTS}"
    for _ in range(REPEATS):
        empty_archive(control_dsn)
        empty_mark(exec_dsn)
        ours = run_child(exec_dsn, control_dsn, "run", start, end)
        assert ours["from_beginning"], ours
        assert (ours["events"], ours["logs"]) == (EVENTS, EVENTS), ours
        assert sum(check_archive(exec_dsn, control_dsn, end, "archive_interval")) == 2 * EVENTS
        ours_seconds.append(ours["seconds"])
    # (c) the rerun over the same interval: nothing changes, the archive is still exact.
    rerun = run_child(exec_dsn, control_dsn, "run", start, end)
    assert not rerun["from_beginning"], rerun
    assert (rerun["events"], rerun["logs"]) == (0, 0), f"the rerun changed rows: {rerun}"
    check_archive(exec_dsn, control_dsn, end, "rerun")
    # (d) memory: baseline, then N/5 rows, on an empty archive (ours above was the N-row run).
    baseline = run_child(exec_dsn, control_dsn, "baseline", start, end)
    empty_archive(control_dsn)
    empty_mark(exec_dsn)
    small = run_child(exec_dsn, control_dsn, "run", start, small_end)
    small_events, small_logs = check_archive(exec_dsn, control_dsn, small_end, "archive_interval N/5")
    assert (small["events"], small["logs"]) == (small_events, small_logs), small
    assert small_events < EVENTS, small

    rows = 2 * EVENTS
    floor_rate = rows / min(floor_seconds)
    ours_rate = rows / min(ours_seconds)
    best = f" (best of {REPEATS})" if REPEATS > 1 else ""
    return [
        f"archiving benchmark: {EVENTS} final events ({rt} rt, {EVENTS - rt} batch;"
        f" ctx ~{ctx_bytes:.0f} bytes) + {EVENTS} delivery logs = {rows} rows,"
        " execution DB -> control DB on one server",
        f"      (setup: generated set-based + VACUUM in {setup:.1f} s; every run checked: counts and md5)",
        f"(a) archive_interval (fresh child process, empty archive){best}",
        f"      stage COPY + upserts         {min(ours_seconds):6.2f} s  {ours_rate:10.0f} rows/s",
        f"(b) floor: binary COPY TO STDOUT -> COPY FROM STDIN into the archive tables{best}",
        f"      no stage, no upsert          {min(floor_seconds):6.2f} s  {floor_rate:10.0f} rows/s",
        f"      ratio (a)/(b) {ours_rate / floor_rate:.2f}x   [target >= 0.5]",
        f"(c) rerun over the same interval: {rerun['events']} events, {rerun['logs']} logs changed"
        f" in {rerun['seconds']:.2f} s ({rows / rerun['seconds']:.0f} rows/s re-read)",
        "(d) peak RSS (ru_maxrss) of the archiving child process",
        f"      baseline (import + connect only)          {baseline['maxrss_kib'] / 1024:6.1f} MB",
        f"      {small_events + small_logs:>8} rows (N/5) in {small['seconds']:6.2f} s"
        f"       {small['maxrss_kib'] / 1024:6.1f} MB",
        f"      {rows:>8} rows (N)   in {ours['seconds']:6.2f} s       {ours['maxrss_kib'] / 1024:6.1f} MB"
        f"   (N - N/5: {(ours['maxrss_kib'] - small['maxrss_kib']) / 1024:+.1f} MB)   [target: bounded]",
    ]


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--archive-child":
        _archive_child(*sys.argv[2:])
    else:
        main()
