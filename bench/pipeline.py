"""Pipeline benchmark: split -> link -> deliver -> status copy, next to its floors, in one run.

Every figure is measured in this run against a fresh database on the same PostgreSQL and printed
next to its floor as a ratio, with the target (2 cores) in brackets:

(a) our pipeline, pending -> Sent with the status copied (NULL transport), driven like the DAG:
    one ``split_queue``, ``link_templates`` per shard, ``deliver_shard`` per shard (both mapped
    steps run in a pool of worker processes, each task with its own connection, like mapped task
    instances on workers), then ``update_events_status``;
(b) the bare set-based SQL floor of the same state changes (3 statements) on an identical dataset;
(c) a naive loop, one committed round trip per statement and event, in rounds (median: its
    commits wait on the WAL flush, whose latency drifts more than anything else measured here);
(d) e-mail through ``deliver_shard`` + ``SmtpTransport`` vs a raw ``smtplib`` loop, same sink, one
    connection each;
(e) real-time latency, event accepted -> delivery log written, ``drain_realtime`` in its own process;
(f) task instances per batch run (1 split + 2 x shards) for 10k vs 100k pending events;
(g) peak RSS of a fresh worker process splitting, linking and delivering out of a 1M-event backlog,
    with 10 messages in flight per chunk (a thread pool, as for a real provider).

    PYTHONPATH=plugins .venv/bin/python bench/pipeline.py
    MC_BENCH_DSN=...               # admin DSN of the server to use (default: local 127.0.0.1:5432)
    MC_BENCH_PIPELINE_EVENTS=...   # events for (a) and (b) (default 200000)
    MC_BENCH_WORKERS=...           # worker processes of the mapped link/deliver steps (default 2)
    MC_BENCH_NAIVE_SAMPLE=...      # events per round of the naive loop (c) (default 1000)
    MC_BENCH_NAIVE_ROUNDS=...      # rounds of the naive loop (c) (default 5)
    MC_BENCH_EMAILS=...            # e-mails of (d) (default 2000)
    MC_BENCH_RT_SECONDS=...        # seconds of 200 events/s real-time load in (e) (default 10)
    MC_BENCH_BACKLOG=...           # backlog of (g) (default 1000000)
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
# Airflow is imported by the SMTP transport: give it a throw-away home, never the developer's.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mc-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from databases import drop_databases, migrated_database  # noqa: E402
from messagecenter import execution  # noqa: E402
from messagecenter.airflow.transports import smtp_transport  # noqa: E402
from messagecenter.core.settings import ProcessingSettings  # noqa: E402
from messagecenter.db.queries import event_table  # noqa: E402
from messagecenter.delivery import NullTransport, OutgoingMessage  # noqa: E402
from messagecenter.intake import store  # noqa: E402
from messagecenter.intake.decode import EventIn, event_from_dict  # noqa: E402
from messagecenter.templates.files import parse_templates  # noqa: E402
from messagecenter.templates.publishing import publish_templates  # noqa: E402
from messagecenter.templates.rendering import Renderer  # noqa: E402
from messagecenter.templates.spec import PublishedTemplate  # noqa: E402

EVENTS = int(os.environ.get("MC_BENCH_PIPELINE_EVENTS", "200000"))
WORKERS = int(os.environ.get("MC_BENCH_WORKERS", "2"))
NAIVE_SAMPLE = int(os.environ.get("MC_BENCH_NAIVE_SAMPLE", "1000"))
NAIVE_ROUNDS = int(os.environ.get("MC_BENCH_NAIVE_ROUNDS", "5"))
EMAILS = int(os.environ.get("MC_BENCH_EMAILS", "2000"))
RT_SECONDS = float(os.environ.get("MC_BENCH_RT_SECONDS", "10"))
RT_RATE = 200  # events/s of the loaded real-time phase
IDLE_EVENTS, IDLE_SPACING = 30, 0.5
BACKLOG = int(os.environ.get("MC_BENCH_BACKLOG", "1000000"))
INSERT_BATCH = 10_000
PREFIX = "mc_bench_pipeline_"
SENT = 2
SENDER = "mc@example.com"

log = logging.getLogger("bench.pipeline")

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
        lines = [{"sku": f"SKU-{(n + i) % 997}", "qty": 1 + i, "price": 9.99 + i} for i in range(1 + n % 3)]
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


# --- databases -----------------------------------------------------------------------------------


def fresh_database(name: str) -> str:
    """A new migrated database ``mc_bench_pipeline_<name>`` with the templates published."""
    dsn = migrated_database(PREFIX + name, "execution")
    with psycopg.connect(dsn) as conn:
        publish_templates(conn, parse_templates(TEMPLATES))
    return dsn


def drop_bench_databases() -> None:
    drop_databases(PREFIX)


def insert_pending(dsn: str, queue: str, total: int) -> float:
    """Store ``total`` events of the mix through ``store.insert_events`` (one COPY per 10k); seconds."""
    start = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for low in range(0, total, INSERT_BATCH):
            events = [event_from_dict(event_body(n)) for n in range(low, min(low + INSERT_BATCH, total))]
            store.insert_events(conn, queue, events, instance_id=1)  # type: ignore[arg-type]
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(event_table(queue)))
    return time.perf_counter() - start


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]  # type: ignore[index]


def status_counts(dsn: str, queue: str) -> dict[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return store.status_counts(conn, queue)  # type: ignore[arg-type]


def null_transport(channel: int) -> NullTransport:
    return NullTransport()


class ConcurrentNullTransport(NullTransport):
    """A null transport a chunk sends to with 10 messages in flight, as to a real provider."""

    max_connections = 10


def concurrent_null(channel: int) -> NullTransport:
    return ConcurrentNullTransport()


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


@dataclass
class Report:
    """Figures and checks of one run, printed together at the end."""

    lines: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, line: str) -> None:
        self.lines.append(line)


@contextmanager
def section(report: Report, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    report.timings[name] = time.perf_counter() - start


# --- (a) our pipeline ------------------------------------------------------------------------------


def _worker_init() -> None:
    quiet_logging()


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

    @property
    def total(self) -> float:
        return self.split + self.link + self.deliver + self.status

    @property
    def rate(self) -> float:
        return self.events / self.total


def bench_pipeline(dsn: str, events: int, workers: int) -> PipelineRun:
    settings = ProcessingSettings(max_events_per_run=max(events, ProcessingSettings.max_events_per_run))
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_worker_init) as pool:
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


# --- (b) the set-based floor -----------------------------------------------------------------------

FLOOR_LINK = """
UPDATE mc.batch_event AS e
SET status = 1, template_id = t.template_id, template_version = t.version,
    next_try = now(), last_modified = now()
FROM (SELECT DISTINCT ON (event_type, channel) event_type, channel, template_id, version
      FROM mc.published_template ORDER BY event_type, channel, published_at DESC, version DESC) AS t
WHERE e.status = 0 AND e.event_type = t.event_type AND e.channel = t.channel
"""
FLOOR_LOG = """
INSERT INTO mc.delivery_log
    (event_id, queue, status, channel, address, template_id, template_version, message_id,
     provider_answer, tries)
SELECT id, 'batch', 2, channel, lower(email), template_id, template_version, 'null-' || id,
       'null transport', 1
FROM mc.batch_event WHERE status = 1
"""
FLOOR_COPY = """
UPDATE mc.batch_event AS e
SET status = l.status, next_try = NULL, processed = l.created, last_modified = now()
FROM mc.delivery_log AS l
WHERE e.id = l.event_id AND e.status = 1
"""


def bench_floor(dsn: str, events: int) -> tuple[float, list[int]]:
    rows = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        for statement in (FLOOR_LINK, FLOOR_LOG, FLOOR_COPY):
            rows.append(conn.execute(statement).rowcount)  # each statement is its own transaction
        elapsed = time.perf_counter() - start
    return events / elapsed, rows


# --- (c) the naive per-event loop ------------------------------------------------------------------


def bench_naive(dsn: str, sample: int, rounds: int) -> list[float]:
    """One committed round trip per statement and event: the anti-pattern the set-based steps avoid.

    ``rounds`` rounds of ``sample`` events each; returns the rate of each round.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM mc.batch_event WHERE status = 0 ORDER BY id")]
    assert len(ids) == sample * rounds
    return [_naive_round(dsn, ids[i * sample : (i + 1) * sample]) for i in range(rounds)]


def _naive_round(dsn: str, ids: list[int]) -> float:
    renderer = Renderer()
    transport = NullTransport()
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        start = time.perf_counter()
        for event_id in ids:
            event = cur.execute("SELECT * FROM mc.batch_event WHERE id = %s", (event_id,)).fetchone()
            assert event is not None
            row = cur.execute(
                "SELECT id, template_id, version, event_type, channel, subject, html, text, data"
                " FROM mc.published_template WHERE event_type = %s AND channel = %s"
                " ORDER BY published_at DESC, version DESC LIMIT 1",
                (event["event_type"], event["channel"]),
            ).fetchone()
            assert row is not None
            template = PublishedTemplate(**row)
            cur.execute(
                "UPDATE mc.batch_event SET status = 1, template_id = %s, template_version = %s,"
                " last_modified = now() WHERE id = %s",
                (template.template_id, template.version, event_id),
            )
            fields = {"id": event_id, "type": event["event_type"], "email": event["email"]}
            rendered = renderer.render(template, event=fields, ctx=event["ctx"])
            address = event["email"].strip().lower()
            sent = transport.send(
                OutgoingMessage(event_id, 0, address, rendered.subject, rendered.html, rendered.text)
            )
            cur.execute(
                "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address, template_id,"
                " template_version, message_id, provider_answer)"
                " VALUES (%s, 'batch', 2, 0, %s, %s, %s, %s, %s)",
                (
                    event_id,
                    address,
                    template.template_id,
                    template.version,
                    sent.message_id,
                    sent.provider_answer,
                ),
            )
            cur.execute(
                "UPDATE mc.batch_event SET status = 2, processed = now(), last_modified = now()"
                " WHERE id = %s",
                (event_id,),
            )
        return len(ids) / (time.perf_counter() - start)


# --- (d) e-mail: our delivery vs raw smtplib -----------------------------------------------------


class CountingHandler:
    """aiosmtpd handler: counts accepted messages and answers 250."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
        return "250 OK"


@contextmanager
def smtp_sink() -> Iterator[tuple[CountingHandler, int]]:
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def raw_messages(count: int) -> list[EmailMessage]:
    """Equivalent messages (same templates, same headers), rendered before the clock starts."""
    renderer = Renderer()
    templates = {
        spec.event_type: PublishedTemplate(i, i, 1, spec.event_type, 0, spec.subject, spec.html, spec.text)
        for i, spec in enumerate(parse_templates(TEMPLATES), 1)
    }
    mails = []
    for n in range(count):
        body = event_body(n)
        rendered = renderer.render(templates[body["type"]], event={"id": n}, ctx=body["ctx"])
        mail = EmailMessage()
        mail["Subject"] = rendered.subject or ""
        mail["From"] = SENDER
        mail["To"] = body["email"].lower()
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid(idstring=f"mc{n}", domain="example.com")
        mail["X-MC-Event-Id"] = str(n)
        mail.set_content(rendered.text or "")
        mail.add_alternative(rendered.html or "", subtype="html")
        mails.append(mail)
    return mails


def bench_email(dsn: str, count: int) -> tuple[float, float]:
    settings = ProcessingSettings()
    insert_pending(dsn, "batch", count)
    with psycopg.connect(dsn) as conn:
        shards = execution.split_queue(conn, "batch", settings)
        for shard in shards:
            execution.link_templates(conn, shard)
    mails = raw_messages(count)
    with smtp_sink() as (handler, port):
        os.environ["AIRFLOW_CONN_MC_SMTP"] = json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {
                    "from_email": SENDER,
                    "disable_ssl": True,
                    "disable_tls": True,
                    "timeout": 5,
                    "retry_limit": 0,
                    # Like for like with the raw loop: one connection, a sink that answers at once
                    # (bench/delivery.py measures the concurrent path against real latency).
                    "max_connections": 1,
                },
            }
        )
        with smtp_transport("mc_smtp") as warm:  # a worker has Airflow imported before its task runs
            assert warm.connections_opened == 1, "cannot reach the SMTP sink"
        with psycopg.connect(dsn) as conn:
            start = time.perf_counter()
            for shard in shards:
                execution.deliver_shard(
                    conn, shard, settings, transport_for=lambda channel: smtp_transport("mc_smtp")
                )
            ours = count / (time.perf_counter() - start)
        assert handler.count == count, f"sink got {handler.count} of our {count} messages"
        assert status_counts(dsn, "batch") == {1: count}
        logs = scalar(dsn, "SELECT count(*) FROM mc.delivery_log WHERE status = 2")
        assert logs == count, f"{logs} Sent logs for {count} e-mails"

        handler.count = 0
        start = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            for mail in mails:
                client.send_message(mail, from_addr=SENDER, to_addrs=[mail["To"]])
        raw = count / (time.perf_counter() - start)
        assert handler.count == count, f"sink got {handler.count} of the raw {count} messages"
    return ours, raw


# --- (e) real-time latency -----------------------------------------------------------------------


def _drain(dsn: str, lifetime: float) -> None:
    quiet_logging()
    execution.drain_realtime(
        functools.partial(psycopg.connect, dsn),
        ProcessingSettings(),
        transport_for=null_transport,
        lifetime_seconds=lifetime,
    )


def push_paced(conn: psycopg.Connection[Any], events: list[EventIn], spacing: float) -> list[int]:
    ids: list[int] = []
    start = time.perf_counter()
    for i, event in enumerate(events):
        delay = start + i * spacing - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ids.extend(store.insert_events(conn, "rt", [event], instance_id=1).ids)
    return ids


def wait_for_logs(conn: psycopg.Connection[Any], ids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = conn.execute(
            "SELECT count(*) FROM mc.delivery_log WHERE event_id = ANY(%s)", (ids,)
        ).fetchone()
        if done and done[0] == len(ids):
            return
        time.sleep(0.1)


def latencies_ms(conn: psycopg.Connection[Any], ids: list[int]) -> list[float]:
    rows = conn.execute(
        "SELECT extract(epoch FROM l.created - e.created) * 1000, l.status FROM mc.rt_event AS e"
        " JOIN mc.delivery_log AS l ON l.event_id = e.id WHERE e.id = ANY(%s)",
        (ids,),
    ).fetchall()
    assert len(rows) == len(ids), f"{len(ids) - len(rows)} of {len(ids)} real-time events got no log"
    assert all(status == SENT for _, status in rows), "a real-time event was not Sent"
    return [float(ms) for ms, _ in rows]


def percentiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


def bench_realtime(dsn: str) -> tuple[tuple[float, float, float], tuple[float, float, float], int]:
    loaded = int(RT_RATE * RT_SECONDS)
    events = [event_from_dict(event_body(n)) for n in range(loaded + IDLE_EVENTS)]
    context = multiprocessing.get_context("spawn")
    drainer = context.Process(target=_drain, args=(dsn, RT_SECONDS + IDLE_EVENTS * IDLE_SPACING + 120))
    drainer.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30  # the drain is up when it LISTENs
            while not conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%LISTEN mc_rt_event'"
            ).fetchone()[0]:  # type: ignore[index]
                assert drainer.is_alive(), "the drain process died"
                assert time.monotonic() < deadline, "the drain did not start listening"
                time.sleep(0.05)
            time.sleep(1)
            busy_ids = push_paced(conn, events[:loaded], 1 / RT_RATE)
            wait_for_logs(conn, busy_ids)
            time.sleep(2)  # idle now
            idle_ids = push_paced(conn, events[loaded:], IDLE_SPACING)
            wait_for_logs(conn, idle_ids)
            busy = percentiles(latencies_ms(conn, busy_ids))
            idle = percentiles(latencies_ms(conn, idle_ids))
    finally:
        drainer.terminate()
        drainer.join()
    return busy, idle, loaded


# --- (f) task instances per run ----------------------------------------------------------------


def task_instances(dsn: str, events: int) -> tuple[int, int]:
    insert_pending(dsn, "batch", events)
    with psycopg.connect(dsn) as conn:
        shards = execution.split_queue(conn, "batch", ProcessingSettings())
    assert sum(s.count for s in shards if s.batch_id is not None) <= events
    claimed = scalar(dsn, "SELECT count(*) FROM mc.batch_event WHERE batch_id IS NOT NULL")
    assert claimed == events, f"split claimed {claimed} of {events}"
    return 1 + 2 * len(shards), len(shards)


# --- (g) worker memory with a backlog ------------------------------------------------------------


def _backlog_worker(dsn: str, mode: str) -> None:
    """Run in a fresh interpreter: ``baseline`` only imports and connects; ``run`` does one batch run."""
    quiet_logging()
    result: dict[str, Any] = {}
    with psycopg.connect(dsn) as conn:
        if mode == "run":
            settings = ProcessingSettings()
            start = time.perf_counter()
            shards = execution.split_queue(conn, "batch", settings)
            counts = execution.Counts()
            for shard in shards:
                counts.add(execution.link_templates(conn, shard))
            for shard in shards:
                counts.add(execution.deliver_shard(conn, shard, settings, transport_for=concurrent_null))
            result = {"shards": len(shards), "seconds": time.perf_counter() - start, **counts.summary()}
    status = Path("/proc/self/status").read_text()
    result["vmhwm_kib"] = int(
        next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
    )
    print(json.dumps(result))


def run_child(dsn: str, mode: str) -> dict[str, Any]:
    """Run ``_backlog_worker`` in a new interpreter; its output, with its own peak RSS (``vmhwm_kib``).

    The peak is the child's ``VmHWM``, read by the child itself: ``wait4``'s ``ru_maxrss`` would also
    count the pages the child shared with this (large) bench process between fork and exec.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    done = subprocess.run(
        [sys.executable, __file__, "--backlog-worker", dsn, mode], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (
        f"backlog worker ({mode}) exited with {done.returncode}: {done.stderr[-2000:]}"
    )
    return json.loads(done.stdout)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    quiet_logging()
    report = Report()
    wall = time.perf_counter()
    try:
        run_all(report)
    finally:
        drop_bench_databases()
    print("\n".join(report.lines))
    print("  section times: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items()))
    print(f"  total wall time {time.perf_counter() - wall:.1f} s")


def run_all(report: Report) -> None:
    out = report.add
    # (a) and (b): the same dataset in two fresh databases.
    with section(report, "(a) pipeline"):
        ours_dsn = fresh_database("ours")
        insert_seconds = insert_pending(ours_dsn, "batch", EVENTS)
        run = bench_pipeline(ours_dsn, EVENTS, WORKERS)
        assert status_counts(ours_dsn, "batch") == {SENT: EVENTS}, "not every event is Sent"
        assert scalar(ours_dsn, "SELECT count(*) FROM mc.delivery_log") == EVENTS
        assert run.counts["sent"] == EVENTS, run.counts
        assert run.counts["copied"] == EVENTS, run.counts
    with section(report, "(b) floor"):
        floor_dsn = fresh_database("floor")
        insert_pending(floor_dsn, "batch", EVENTS)
        floor, rows = bench_floor(floor_dsn, EVENTS)
        assert rows == [EVENTS] * 3, rows
        assert status_counts(floor_dsn, "batch") == {SENT: EVENTS}
    with section(report, "(c) naive"):
        naive_dsn = fresh_database("naive")
        insert_pending(naive_dsn, "batch", NAIVE_SAMPLE * NAIVE_ROUNDS)
        naive_rounds = bench_naive(naive_dsn, NAIVE_SAMPLE, NAIVE_ROUNDS)
        naive = statistics.median(naive_rounds)
        assert status_counts(naive_dsn, "batch") == {SENT: NAIVE_SAMPLE * NAIVE_ROUNDS}
        assert scalar(naive_dsn, "SELECT count(*) FROM mc.delivery_log") == NAIVE_SAMPLE * NAIVE_ROUNDS
    with section(report, "(d) e-mail"):
        ours_mail, raw_mail = bench_email(fresh_database("email"), EMAILS)
    with section(report, "(e) real time"):
        busy, idle, loaded = bench_realtime(fresh_database("rt"))
    with section(report, "(f) task instances"):
        ti_10k, shards_10k = task_instances(fresh_database("ti_10k"), 10_000)
        ti_100k, shards_100k = task_instances(fresh_database("ti_100k"), 100_000)
    with section(report, "(g) backlog memory"):
        backlog_dsn = fresh_database("backlog")
        backlog_insert = insert_pending(backlog_dsn, "batch", BACKLOG)
        baseline = run_child(backlog_dsn, "baseline")
        worker = run_child(backlog_dsn, "run")
        expected = min(BACKLOG, ProcessingSettings.max_events_per_run)
        assert worker["sent"] == expected, worker
        assert scalar(backlog_dsn, "SELECT count(*) FROM mc.delivery_log") == expected
        assert status_counts(backlog_dsn, "batch").get(0, 0) == BACKLOG - expected

    mix = "email: 60% ORDER_CONFIRMATION, 30% PASSWORD_RESET, 10% SHIPPING_NOTIFICATION"
    out(f"pipeline benchmark ({mix}; every figure measured in this run)")
    out(
        f"(a) our pipeline, {EVENTS} batch events pending -> Sent + status copied, NULL transport;"
        f" link and deliver mapped over {run.shards} shards in {WORKERS} worker processes"
        f" (spawn pool, one connection per task)"
    )
    out(
        f"      split {run.split:.2f} s, link {run.link:.2f} s, deliver {run.deliver:.2f} s,"
        f" status copy {run.status:.2f} s = {run.total:.2f} s   {run.rate:10.0f} events/s"
    )
    out(
        f"      (setup: {EVENTS} events stored via store.insert_events, 10k per COPY,"
        f" in {insert_seconds:.1f} s)"
    )
    out(f"(b) set-based SQL floor (link UPDATE, log INSERT..SELECT, copy UPDATE) {floor:10.0f} events/s")
    out(f"      ratio (a)/(b) {run.rate / floor:.2f}x   [target >= 0.33]")
    out(
        f"(c) naive per-event loop, 5 statements per event, each its own transaction;"
        f" {NAIVE_ROUNDS} rounds of {NAIVE_SAMPLE} events: median {naive:.0f} events/s"
        f" (rounds: {', '.join(f'{r:.0f}' for r in naive_rounds)})"
    )
    out(f"      ratio (a)/(c) {run.rate / naive:.1f}x   [target >= 20]")
    out(f"(d) e-mail to an in-process aiosmtpd sink, {EMAILS} messages")
    out(f"      ours: deliver_shard + SmtpTransport (one process)  {ours_mail:8.0f} msgs/s")
    out(f"      raw: one smtplib connection, pre-rendered messages {raw_mail:8.0f} msgs/s")
    out(f"      ratio ours/raw {ours_mail / raw_mail:.2f}x   [target >= 0.8]")
    out(
        "(e) real-time latency, accepted -> delivery log (drain_realtime in its own process,"
        " single-event store.insert_events from the bench process)"
    )
    out(
        f"      {RT_RATE} events/s for {RT_SECONDS:g} s ({loaded} events): p50 {busy[0]:.0f} ms,"
        f" p95 {busy[1]:.0f} ms, p99 {busy[2]:.0f} ms   [target p95 <= 1000 ms]"
    )
    out(
        f"      idle, {IDLE_EVENTS} events {IDLE_SPACING:g} s apart: p50 {idle[0]:.0f} ms,"
        f" p95 {idle[1]:.0f} ms, p99 {idle[2]:.0f} ms   [target p95 <= 250 ms]"
    )
    out("(f) task instances per batchEventsProcessing run (1 split + 2 x shards), default settings")
    out(
        f"      10k events: {ti_10k} ({shards_10k} shards); 100k events: {ti_100k} ({shards_100k} shards);"
        f" ratio 100k/10k {ti_100k / ti_10k:.2f}   [target: equal within 10%]"
    )
    out(
        f"(g) worker with a {BACKLOG}-event backlog (stored via store.insert_events, 10k per COPY,"
        f" in {backlog_insert:.1f} s): fresh process, one split + link + deliver (NULL transport,"
        " 10 messages in flight)"
    )
    out(
        f"      {worker['sent']} delivered over {worker['shards']} shards in {worker['seconds']:.1f} s;"
        f" peak RSS (VmHWM) {worker['vmhwm_kib'] / 1024:.0f} MB   [target <= 300 MB]"
    )
    out(f"      baseline (import + connect only): peak RSS {baseline['vmhwm_kib'] / 1024:.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--backlog-worker":
        _backlog_worker(sys.argv[2], sys.argv[3])
    else:
        main()
