"""What the delivery benchmarks share: local sinks that only add a provider's latency (an SMTP
relay answering each message after 20 ms, an SMS API answering each request after 100 ms, both
noting when each message arrived), the connections to them, the events, delivery in mapped-task
worker processes, the real-time drain in its own process, and the raw clients (the ceilings)."""

from __future__ import annotations

import json
import multiprocessing
import os
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.mime.text import MIMEText
from typing import Any

import httpx
import psycopg

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.sinks import Arrivals, LatencyHttpSink, LatencySmtp, SmtpServer
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake.decode import EventIn, event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates

BATCH_EVENTS = env.size("MC_BENCH_DELIVERY_EVENTS", 4000)  # batch events per channel
# Real-time events per channel: half the batch ones, at least 2,000 (scaled).
RT_EVENTS = int(os.environ.get("MC_BENCH_DELIVERY_RT_EVENTS") or max(BATCH_EVENTS // 2, env.size(None, 2000)))
SMTP_LATENCY, SMS_LATENCY = 0.020, 0.100
SMTP_CONNECTIONS, SMS_CONNECTIONS = 10, 32  # the connections' max_connections (their defaults)
SHARDS = 4
SENDER = "mc@example.com"
TEMPLATES = {
    "templates": [
        {
            "event_type": "CODE",
            "channel": "email",
            "subject": "Code {{ ctx.n }}",
            "text": "Your code: {{ ctx.n }}",
        },
        {"event_type": "CODE", "channel": "sms", "text": "Your code: {{ ctx.n }}"},
    ]
}
SETTINGS = ProcessingSettings(
    parallelism=SHARDS, min_shard_size=1, deliver_chunk=500, retry_backoff_seconds=0
)
HEADING = (
    f"delivery benchmark: SMTP sink answering after {SMTP_LATENCY * 1000:.0f} ms, SMS sink after "
    f"{SMS_LATENCY * 1000:.0f} ms; max_connections {SMTP_CONNECTIONS} (SMTP) and "
    f"{SMS_CONNECTIONS} (SMS)"
)


# --- the sinks and the connections to them ------------------------------------------------------


@dataclass(frozen=True)
class Sinks:
    mail: Arrivals
    smtp_port: int
    sms: Arrivals
    sms_port: int
    connections: dict[str, str]  # AIRFLOW_CONN_MC_SMTP and AIRFLOW_CONN_MC_SMS to them


@contextmanager
def latency_sinks() -> Iterator[Sinks]:
    """The SMTP relay and the SMS API, started, with the ``mc_smtp`` and ``mc_sms`` connections."""
    mail, sms = Arrivals(), Arrivals()
    with SmtpServer(LatencySmtp(SMTP_LATENCY, mail)) as smtp, LatencyHttpSink(SMS_LATENCY, sms) as http:
        smtp_extra = {"from_email": SENDER, "timeout": 30, "retry_limit": 0}
        connections = {
            "AIRFLOW_CONN_MC_SMTP": env.connection(smtp.connection(), **smtp_extra),
            "AIRFLOW_CONN_MC_SMS": env.connection(http.connection("sms")),
        }
        yield Sinks(mail, smtp.port, sms, http.port, connections)


# --- our pipeline ---------------------------------------------------------------------------------


def create_database(databases: Databases, name: str) -> str:
    dsn = databases.create(name, "execution")
    with psycopg.connect(dsn) as conn:
        publish_templates(conn, parse_templates(TEMPLATES))
    return dsn


def events(channel: str, count: int) -> list[EventIn]:
    address = {"email": "email", "sms": "mobile_phone"}[channel]
    value = {"email": "u{n}@example.com", "sms": "+336{n:08d}"}[channel]
    return [
        event_from_dict({"type": "CODE", "channel": channel, address: value.format(n=n), "ctx": {"n": n}})
        for n in range(count)
    ]


def _deliver_task(dsn: str, shard: execution.Shard) -> int:
    """One mapped delivery task: its own process and connection, like DeliverMessagesOperator."""
    from messagecenter.airflow.transports import transport_for

    with psycopg.connect(dsn) as conn:
        return execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for).sent


def _warm(_: int) -> int:
    from messagecenter.airflow.transports import transport_for  # noqa: F401  # imported before the clock

    time.sleep(0.2)
    return os.getpid()


def deliver_in_workers(dsn: str, shards: list[execution.Shard]) -> int:
    """Deliver ``shards``, one worker process per shard (spawned and warmed before), as the mapped
    delivery tasks run; the connections are this process's environment. Messages sent."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(shards)) as pool:
        pool.map(_warm, range(len(shards)))
        return sum(pool.starmap(_deliver_task, [(dsn, shard) for shard in shards]))


DRAIN = """
import sys
from messagecenter import execution
from messagecenter.airflow.transports import transport_for, warm_up
from messagecenter.core.settings import ProcessingSettings
import psycopg
dsn, lifetime = sys.argv[1], float(sys.argv[2])
settings = ProcessingSettings(deliver_chunk=500)
warm_up()  # as DrainRealtimeOperator does
execution.drain_realtime(lambda: psycopg.connect(dsn), settings, transport_for=transport_for,
                         lifetime_seconds=lifetime, idle_wait_seconds=0.2)
"""


@contextmanager
def drain_process(dsn: str, connections: dict[str, str], lifetime: float) -> Iterator[None]:
    """A real-time drain in its own process (as ``DrainRealtimeOperator`` runs it), listening."""
    drain = subprocess.Popen(
        [sys.executable, "-c", DRAIN, dsn, str(lifetime)],
        env=env.child_env(**connections),
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:  # listening: it is draining
            deadline = time.monotonic() + 30
            while not _listening(conn):
                assert time.monotonic() < deadline, "the drain never listened"
                time.sleep(0.05)
        yield
    finally:
        drain.terminate()
        drain.wait(30)


def _listening(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%LISTEN mc_rt_event'"
    ).fetchone()
    return bool(row and row[0])


# --- raw clients ----------------------------------------------------------------------------------


def raw_smtp(port: int, connections: int, count: int, arrivals: Arrivals) -> float:
    """Messages/s of ``count`` pre-built messages over ``connections`` concurrent SMTP connections."""
    local = threading.local()
    messages = []
    for n in range(count):
        mail = MIMEText(f"Your code: {n}")
        mail["Subject"], mail["From"], mail["To"] = f"Code {n}", SENDER, f"u{n}@example.com"
        mail["X-MC-Event-Id"] = str(n + 1)
        messages.append(mail)

    def send(mail: MIMEText) -> None:
        if not hasattr(local, "client"):
            local.client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        local.client.send_message(mail)

    return _raw(send, messages, connections, arrivals, count)


def raw_http(port: int, connections: int, count: int, arrivals: Arrivals) -> float:
    """Messages/s of ``count`` pre-encoded SMS requests over ``connections`` concurrent connections."""
    local = threading.local()
    bodies = [
        json.dumps({"to": f"+336{n:08d}", "text": f"Your code: {n}", "event_id": n + 1}) for n in range(count)
    ]

    verify = ssl.create_default_context()  # one for all (each would load the CA bundle)

    def send(body: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30, verify=verify)
        local.client.post(
            f"http://127.0.0.1:{port}/sms", content=body, headers={"Content-Type": "application/json"}
        )

    return _raw(send, bodies, connections, arrivals, count)


def _raw(
    send: Callable[[Any], None], items: list[Any], connections: int, arrivals: Arrivals, count: int
) -> float:
    arrivals.reset()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(send, items))
    assert len(arrivals.events) == count
    return arrivals.rate()


@dataclass(frozen=True)
class Channel:
    """A channel as the benchmarks compare it: its sink, its raw client, its connections' limit."""

    name: str
    latency: float
    arrivals: Arrivals
    port: int
    raw: Callable[[int, int, int, Arrivals], float]
    connections: int


def channels(sinks: Sinks) -> tuple[Channel, Channel]:
    """E-mail, then SMS."""
    return (
        Channel("email", SMTP_LATENCY, sinks.mail, sinks.smtp_port, raw_smtp, SMTP_CONNECTIONS),
        Channel("sms", SMS_LATENCY, sinks.sms, sinks.sms_port, raw_http, SMS_CONNECTIONS),
    )
