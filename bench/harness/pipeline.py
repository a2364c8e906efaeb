"""What the pipeline benchmarks share: the e-mail event mix and its templates, storing it pending,
and (a), our batch run driven like the DAG, which two of them compare with their floors."""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bench.harness import env
from bench.harness.databases import Databases, scalar
from bench.harness.report import Report
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import Queue
from messagecenter.db.queries import event_table
from messagecenter.delivery import NullTransport
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates

EVENTS = env.size("MC_BENCH_PIPELINE_EVENTS", 200_000)  # events of (a) and its floors
WORKERS = int(os.environ.get("MC_BENCH_WORKERS", "2"))  # worker processes of the mapped steps of (a)
INSERT_BATCH = 10_000
SENT = 2
SENDER = "mc@example.com"
MIX = "email: 60% ORDER_CONFIRMATION, 30% PASSWORD_RESET, 10% SHIPPING_NOTIFICATION"
HEADING = f"pipeline benchmark ({MIX}; every figure measured in this run)"

# Three e-mail event types, in a 6:3:1 mix, with realistic personalisation objects.
TEMPLATES = {
    "templates": [
        {
            "event_type": "ORDER_CONFIRMATION",
            "channel": "email",
            "subject": "Order {{ ctx.orderId }} confirmed",
            "html": (
                "<h1>Thank you, {{ ctx.firstName }}!</h1><p>Order <b>{{ ctx.orderId }}</b></p><table>"
                "{% for line in ctx.lines %}<tr><td>{{ line.sku }}</td><td>{{ line.qty }}</td>"
                "<td>{{ '%.2f'|format(line.price) }}</td></tr>{% endfor %}</table>"
                "<p>Total: {{ '%.2f'|format(ctx.total) }} EUR</p>"
            ),
            "text": (
                "Hello {{ ctx.firstName }},\nyour order {{ ctx.orderId }} ({{ ctx.lines|length }} lines, "
                "{{ '%.2f'|format(ctx.total) }} EUR) is confirmed.\n"
                "{% for line in ctx.lines %}- {{ line.qty }} x {{ line.sku }}\n{% endfor %}"
            ),
        },
        {
            "event_type": "PASSWORD_RESET",
            "channel": "email",
            "subject": "Reset your password, {{ ctx.firstName }}",
            "html": (
                '<p>Hello {{ ctx.firstName }},</p><p><a href="{{ ctx.resetUrl }}">Reset your password</a>'
                " within {{ ctx.expiresMinutes }} minutes.</p>"
            ),
            "text": "Hello {{ ctx.firstName }}, reset your password within {{ ctx.expiresMinutes }} "
            "minutes: {{ ctx.resetUrl }}",
        },
        {
            "event_type": "SHIPPING_NOTIFICATION",
            "channel": "email",
            "subject": "Order {{ ctx.orderId }} shipped with {{ ctx.carrier }}",
            "html": (
                "<p>Your order {{ ctx.orderId }} is on its way.</p><p>Tracking: "
                "{{ ctx.trackingNumber }} ({{ ctx.carrier }}), expected {{ ctx.eta }}.</p>"
            ),
            "text": "Order {{ ctx.orderId }}: tracking {{ ctx.trackingNumber }} ({{ ctx.carrier }}), "
            "expected {{ ctx.eta }}.",
        },
    ]
}


def event_body(n: int) -> dict[str, Any]:
    """Event ``n`` of the mix: 60% order confirmations, 30% password resets, 10% shipping notices."""
    kind = n % 10
    base = {"channel": "email", "email": f"Customer{n}@Example.com", "language": "en", "country": "FR"}
    if kind < 6:
        lines: list[dict[str, Any]] = [
            {"sku": f"SKU-{(n + i) % 997}", "qty": 1 + i, "price": 9.99 + i} for i in range(1 + n % 3)
        ]
        total = round(sum(line["qty"] * line["price"] for line in lines), 2)
        ctx = {"firstName": "Ann", "orderId": f"A-{n}", "total": total, "lines": lines}
        return {**base, "type": "ORDER_CONFIRMATION", "external_id": f"order-{n}", "ctx": ctx}
    if kind < 9:
        ctx = {
            "firstName": "Bob",
            "resetUrl": f"https://shop.example.com/reset?t={n:x}",
            "expiresMinutes": 30,
        }
        return {**base, "type": "PASSWORD_RESET", "ctx": ctx}
    ctx = {"orderId": f"A-{n}", "carrier": "DHL", "trackingNumber": f"JD{n:012d}", "eta": "2025-06-03"}
    return {**base, "type": "SHIPPING_NOTIFICATION", "ctx": ctx}


def create_database(databases: Databases, name: str) -> str:
    """A new migrated execution database with the mix's templates published."""
    dsn = databases.create(name, "execution")
    with psycopg.connect(dsn) as conn:
        publish_templates(conn, parse_templates(TEMPLATES))
    return dsn


def insert_pending(dsn: str, queue: Queue, total: int) -> float:
    """Store ``total`` events of the mix through ``store.insert_events`` (one COPY per 10k); seconds."""
    start = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for low in range(0, total, INSERT_BATCH):
            events = [event_from_dict(event_body(n)) for n in range(low, min(low + INSERT_BATCH, total))]
            store.insert_events(conn, queue, events, instance_id=1)
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(event_table(queue)))
    return time.perf_counter() - start


def status_counts(dsn: str, queue: Queue) -> dict[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return store.status_counts(conn, queue)


def null_transport(channel: int) -> NullTransport:
    return NullTransport()


# --- (a) our pipeline ------------------------------------------------------------------------------


def _link_task(dsn: str, shard: execution.Shard) -> dict[str, int]:
    """One mapped link task instance: its own connection, like LinkTemplatesOperator."""
    with psycopg.connect(dsn) as conn:
        return execution.link_templates(conn, shard).summary()


def _deliver_task(dsn: str, settings: ProcessingSettings, shard: execution.Shard) -> dict[str, int]:
    """One mapped delivery task instance: its own connection, like DeliverMessagesOperator."""
    with psycopg.connect(dsn) as conn:
        return execution.deliver_shard(conn, shard, settings, transport_for=null_transport).summary()


def _warm(_: int) -> int:
    time.sleep(0.2)  # every worker is up and has imported the package before the clock starts
    return os.getpid()


@dataclass
class PipelineRun:
    events: int
    shards: int
    split: float
    link: float
    deliver: float
    status: float
    counts: dict[str, int]
    insert_seconds: float = 0.0  # the setup: storing the pending events

    @property
    def total(self) -> float:
        return self.split + self.link + self.deliver + self.status

    @property
    def rate(self) -> float:
        return self.events / self.total


def bench_pipeline(dsn: str, events: int, workers: int) -> PipelineRun:
    """One ``split_queue``, ``link_templates`` and ``deliver_shard`` per shard in a pool of worker
    processes (each task with its own connection, like mapped task instances on workers), then
    ``update_events_status``."""
    settings = ProcessingSettings(max_events_per_run=max(events, ProcessingSettings.max_events_per_run))
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=env.quiet_logging) as pool:
        assert len(set(pool.map(_warm, range(workers * 2)))) == workers
        t0 = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            shards = execution.split_queue(conn, "batch", settings)
        t1 = time.perf_counter()
        linked = pool.map(functools.partial(_link_task, dsn), shards, chunksize=1)
        t2 = time.perf_counter()
        delivered = pool.map(functools.partial(_deliver_task, dsn, settings), shards, chunksize=1)
        t3 = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            copied = execution.update_events_status(conn)
        t4 = time.perf_counter()
    counts = execution.Counts(claimed=sum(s.count for s in shards), copied=copied.copied)
    for c in (*linked, *delivered):
        counts.add(execution.Counts(**{k: v for k, v in c.items() if k not in ("claimed", "copied")}))
    return PipelineRun(events, len(shards), t1 - t0, t2 - t1, t3 - t2, t4 - t3, counts.summary())


def measure_pipeline(report: Report, databases: Databases) -> PipelineRun:
    """(a) on ``EVENTS`` pending events in a fresh database, checked: every event Sent, logged once
    and its status copied."""
    with report.section("(a) pipeline"):
        dsn = create_database(databases, "ours")
        insert_seconds = insert_pending(dsn, "batch", EVENTS)
        run = bench_pipeline(dsn, EVENTS, WORKERS)
        assert status_counts(dsn, "batch") == {SENT: EVENTS}, "not every event is Sent"
        assert scalar(dsn, "SELECT count(*) FROM mc.delivery_log") == EVENTS
        assert run.counts["sent"] == EVENTS, run.counts
        assert run.counts["copied"] == EVENTS, run.counts
    run.insert_seconds = insert_seconds
    return run


def report_pipeline(report: Report, run: PipelineRun) -> None:
    """The heading and the lines of (a)."""
    out = report.add
    out(HEADING)
    out(
        f"(a) our pipeline, {run.events} batch events pending -> Sent + status copied, NULL transport;"
        f" link and deliver mapped over {run.shards} shards in {WORKERS} worker processes"
        f" (spawn pool, one connection per task)"
    )
    out(
        f"      split {run.split:.2f} s, link {run.link:.2f} s, deliver {run.deliver:.2f} s,"
        f" status copy {run.status:.2f} s = {run.total:.2f} s   {run.rate:10.0f} events/s"
    )
    out(
        f"      (setup: {run.events} events stored via store.insert_events, 10k per COPY,"
        f" in {run.insert_seconds:.1f} s)"
    )
