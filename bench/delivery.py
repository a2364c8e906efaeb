"""Delivery benchmark: real providers' latency, our pipeline next to a raw client, in one run.

Local sinks that only add latency: an SMTP server answering each message after 20 ms and an HTTP
SMS provider answering each request after 100 ms; each records when every message arrived. Every
figure is measured in this run, checked (every event Sent, every message arrived once) and
printed next to its ceiling, with the target in brackets:

(a) batch: ``batchEventsProcessing``'s link and deliver steps over N events per channel, as its
    mapped tasks run them (4 shards, one process per mapped delivery task), first to last arrival;
(b) real time: one drain process, N events pushed at once, first to last arrival;
(c) the ceiling: a raw client with the same number of concurrent connections to the same sink,
    pre-rendered messages (and the one-connection raw loop, for context);
(d) real-time latency, accepted by the API -> status Sent readable through GET, at 200 events/s
    with the 20 ms relay (the standalone API and the drain in their own processes);
(e) a provider's ``max_rate`` honoured by two worker processes together, over 60 s.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery.py
    MC_BENCH_DELIVERY_EVENTS=...   # N of (a) and (b) per channel (default 4000 batch, 2000 real time)
    MC_BENCH_RT_SECONDS=...        # seconds of 200 events/s in (d) (default 10)
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from email.mime.text import MIMEText
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mc-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from databases import drop_databases, migrated_database, start_api  # noqa: E402
from messagecenter import execution  # noqa: E402
from messagecenter.core.settings import ProcessingSettings  # noqa: E402
from messagecenter.intake import store  # noqa: E402
from messagecenter.intake.decode import event_from_dict  # noqa: E402
from messagecenter.templates.files import parse_templates  # noqa: E402
from messagecenter.templates.publishing import publish_templates  # noqa: E402

BATCH_EVENTS = int(os.environ.get("MC_BENCH_DELIVERY_EVENTS", "4000"))
RT_EVENTS = int(os.environ.get("MC_BENCH_DELIVERY_RT_EVENTS", str(max(BATCH_EVENTS // 2, 2000))))
RT_SECONDS = float(os.environ.get("MC_BENCH_RT_SECONDS", "10"))
RATE = float(os.environ.get("MC_BENCH_RATE", "20"))  # the provider's max_rate in (e)
RATE_SECONDS = float(os.environ.get("MC_BENCH_RATE_SECONDS", "60"))
SMTP_LATENCY, SMS_LATENCY = 0.020, 0.100
SMTP_CONNECTIONS, SMS_CONNECTIONS = 10, 32  # the connections' max_connections (their defaults)
SHARDS = 4
PREFIX = "mc_bench_delivery_"
TOKEN = "bench-token"
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


# --- sinks that only add latency ------------------------------------------------------------------


class Arrivals:
    """When each message arrived (monotonic clock of this process), and which event it carried."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.events: list[int] = []

    def add(self, event_id: int) -> None:
        with self.lock:
            self.times.append(time.monotonic())
            self.events.append(event_id)

    def reset(self) -> None:
        with self.lock:
            self.times.clear()
            self.events.clear()

    def rate(self) -> float:
        times = sorted(self.times)
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


class _SlowSmtpHandler:
    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(SMTP_LATENCY)
        header = b"X-MC-Event-Id: "
        content = envelope.original_content
        start = content.find(header)
        event_id = int(content[start + len(header) : content.find(b"\r\n", start)]) if start >= 0 else 0
        self.arrivals.add(event_id)
        return "250 OK"


class _SlowHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        time.sleep(SMS_LATENCY)
        self.server.arrivals.add(int(body.get("event_id", 0)))
        data = b'{"id": "m-1"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its kept-alive connection at the end: expected


@contextmanager
def sinks() -> Iterator[tuple[Arrivals, int, Arrivals, int]]:
    from aiosmtpd.controller import Controller

    mail, sms = Arrivals(), Arrivals()
    smtp = Controller(_SlowSmtpHandler(mail), hostname="127.0.0.1", port=_free_port())
    smtp.start()
    http = _HttpServer(("127.0.0.1", 0), _SlowHttpHandler)
    http.arrivals = sms  # type: ignore[attr-defined]
    threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield mail, smtp.port, sms, http.server_address[1]
    finally:
        smtp.stop()
        http.shutdown()
        http.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connections_env(smtp_port: int, sms_port: int) -> dict[str, str]:
    smtp = {"from_email": SENDER, "disable_ssl": True, "disable_tls": True, "timeout": 30, "retry_limit": 0}
    return {
        "AIRFLOW_CONN_MC_SMTP": json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port, "extra": smtp}
        ),
        "AIRFLOW_CONN_MC_SMS": json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": sms_port, "extra": {"endpoint": "/sms"}}
        ),
    }


# --- our pipeline ---------------------------------------------------------------------------------


def fresh_database(name: str) -> str:
    dsn = migrated_database(PREFIX + name, "execution")
    with psycopg.connect(dsn) as conn:
        publish_templates(conn, parse_templates(TEMPLATES))
    return dsn


def events(channel: str, count: int) -> list[Any]:
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


def bench_batch(channel: str, arrivals: Arrivals, env: dict[str, str]) -> float:
    dsn = fresh_database(f"batch_{channel}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        store.insert_events(conn, "batch", events(channel, BATCH_EVENTS), instance_id=1)
        shards = execution.split_queue(conn, "batch", SETTINGS)
        for shard in shards:
            execution.link_templates(conn, shard)
    assert len(shards) == SHARDS, shards
    arrivals.reset()
    context = multiprocessing.get_context("spawn")
    os.environ.update(env)
    with context.Pool(SHARDS) as pool:
        pool.map(_warm, range(SHARDS))
        sent = sum(pool.starmap(_deliver_task, [(dsn, shard) for shard in shards]))
    assert sent == BATCH_EVENTS, f"{sent} of {BATCH_EVENTS} sent"
    assert sorted(arrivals.events) == sorted(set(arrivals.events))
    assert len(arrivals.events) == BATCH_EVENTS
    return arrivals.rate()


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
def drain_process(dsn: str, env: dict[str, str], lifetime: float) -> Iterator[subprocess.Popen[str]]:
    process_env = {**os.environ, **env, "PYTHONPATH": str(REPO / "plugins")}
    drain = subprocess.Popen(
        [sys.executable, "-c", DRAIN, dsn, str(lifetime)],
        env=process_env,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:  # listening: it is draining
            deadline = time.monotonic() + 30
            while not conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%LISTEN mc_rt_event'"
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the drain never listened"
                time.sleep(0.05)
        yield drain
    finally:
        drain.terminate()
        drain.wait(30)


def bench_realtime(channel: str, arrivals: Arrivals, env: dict[str, str]) -> float:
    dsn = fresh_database(f"rt_{channel}")
    arrivals.reset()
    with drain_process(dsn, env, lifetime=300):
        with psycopg.connect(dsn, autocommit=True) as conn:
            store.insert_events(conn, "rt", events(channel, RT_EVENTS), instance_id=1)
        deadline = time.monotonic() + 300
        while len(arrivals.times) < RT_EVENTS and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(arrivals.events) == RT_EVENTS == len(set(arrivals.events)), len(arrivals.events)
    return arrivals.rate()


def bench_rate(arrivals: Arrivals, env: dict[str, str], sms_port: int) -> tuple[float, float, float]:
    """Two worker processes deliver to one provider whose connection sets ``max_rate``: the rate
    over the whole run, and the slowest and fastest 10-second windows."""
    conn_json = json.loads(env["AIRFLOW_CONN_MC_SMS"])
    conn_json["extra"] = {**conn_json["extra"], "max_rate": RATE}
    rate_env = {**env, "AIRFLOW_CONN_MC_SMS": json.dumps(conn_json)}
    total = int(RATE * RATE_SECONDS)
    dsn = fresh_database("rate")
    with psycopg.connect(dsn, autocommit=True) as conn:
        store.insert_events(conn, "batch", events("sms", total), instance_id=1)
        shards = execution.split_queue(conn, "batch", replace(SETTINGS, parallelism=2))
        for shard in shards:
            execution.link_templates(conn, shard)
    assert len(shards) == 2, shards
    arrivals.reset()
    context = multiprocessing.get_context("spawn")
    os.environ.update(rate_env)
    try:
        with context.Pool(2) as pool:
            pool.map(_warm, range(2))
            sent = sum(pool.starmap(_deliver_task, [(dsn, shard) for shard in shards]))
    finally:
        os.environ.update(env)
    assert sent == total, f"{sent} of {total} sent"
    times = sorted(arrivals.times)
    windows = []
    start = times[0]
    while start + 10 <= times[-1]:
        windows.append(sum(1 for t in times if start <= t < start + 10) / 10)
        start += 10
    windows = windows or [arrivals.rate()]  # a run shorter than one window
    return arrivals.rate(), min(windows), max(windows)


# --- raw clients ----------------------------------------------------------------------------------


def raw_smtp(port: int, connections: int, count: int, arrivals: Arrivals) -> float:
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


# --- (d) real-time latency through the API --------------------------------------------------------


def bench_latency(smtp_port: int, env: dict[str, str]) -> tuple[float, float, float, int]:
    """p50, p95, p99 (ms) from an accepted push to status Sent readable through GET."""
    dsn = fresh_database("rt_latency")
    port = _free_port()
    api_env = {**os.environ, **env, "PYTHONPATH": str(REPO / "plugins"), "MC_API_TOKENS": TOKEN}
    api_env["AIRFLOW_CONN_MC_EXECUTION"] = "postgresql://" + _uri_part(dsn)
    api = start_api(port, api_env)
    base = f"http://127.0.0.1:{port}/api/v1"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    try:
        _wait_http(f"{base}/health", headers)
        with (
            drain_process(dsn, env, lifetime=300),
            httpx.Client(headers=headers, timeout=30) as client,
            ThreadPoolExecutor(32) as pollers,
        ):
            local = threading.local()

            def until_sent(event_id: int, accepted: float) -> float:
                """Poll GET every 10 ms until the event reads Sent; seconds from its acceptance."""
                if not hasattr(local, "client"):
                    local.client = httpx.Client(headers=headers, timeout=30)
                while local.client.get(f"{base}/events/rt/{event_id}").json()["status"] != 2:
                    assert time.monotonic() - accepted < 60, f"event {event_id} not Sent after 60 s"
                    time.sleep(0.01)
                return time.monotonic() - accepted

            total = int(200 * RT_SECONDS)
            watched = []
            start = time.monotonic()
            for n in range(total):
                time.sleep(max(start + n / 200 - time.monotonic(), 0))
                body = {"type": "CODE", "email": f"l{n}@example.com", "ctx": {"n": n}}
                answer = client.post(f"{base}/events/rt", json=body)
                assert answer.status_code == 201, answer.text
                if n % 5 == 0:  # one event in five is watched through GET (each watch polls often)
                    watched.append(pollers.submit(until_sent, answer.json()["id"], time.monotonic()))
            latencies.extend(f.result() for f in watched)
    finally:
        api.terminate()
        api.wait(30)
    q = statistics.quantiles([x * 1000 for x in latencies], n=100, method="inclusive")
    return q[49], q[94], q[98], len(latencies)


def _uri_part(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    return f"{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"


def _wait_http(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    started = time.monotonic()
    out = print
    out(
        f"delivery benchmark: SMTP sink answering after {SMTP_LATENCY * 1000:.0f} ms, SMS sink after "
        f"{SMS_LATENCY * 1000:.0f} ms; max_connections {SMTP_CONNECTIONS} (SMTP) and "
        f"{SMS_CONNECTIONS} (SMS)"
    )
    try:
        with sinks() as (mail, smtp_port, sms, sms_port):
            env = connections_env(smtp_port, sms_port)
            for channel, arrivals, port, raw, conns in (
                ("email", mail, smtp_port, raw_smtp, SMTP_CONNECTIONS),
                ("sms", sms, sms_port, raw_http, SMS_CONNECTIONS),
            ):
                latency = SMTP_LATENCY if channel == "email" else SMS_LATENCY
                batch = bench_batch(channel, arrivals, env)
                raw_batch = raw(port, conns * SHARDS, BATCH_EVENTS, arrivals)
                rt = bench_realtime(channel, arrivals, env)
                raw_rt = raw(port, conns, RT_EVENTS, arrivals)
                one = raw(port, 1, min(200 if channel == "email" else 50, RT_EVENTS), arrivals)
                out(f"({channel}, {latency * 1000:.0f} ms)")
                out(
                    f"  (a) batch, {BATCH_EVENTS} events, {SHARDS} shards in {SHARDS} worker processes: "
                    f"{batch:7.0f} msgs/s   raw client, {conns * SHARDS} connections: "
                    f"{raw_batch:7.0f} msgs/s   "
                    f"ratio {batch / raw_batch:.2f}x   [target >= 0.7]"
                )
                out(
                    f"  (b) real time, {RT_EVENTS} events, one drain process:          "
                    f"{rt:7.0f} msgs/s   raw client, {conns} connections: {raw_rt:7.0f} msgs/s   "
                    f"ratio {rt / raw_rt:.2f}x   [target >= 0.7]"
                )
                out(f"  (c) context: raw one-connection loop {one:7.0f} msgs/s")
            overall, slowest, fastest = bench_rate(sms, env, sms_port)
            out(
                f"(e) max_rate {RATE:g}/s on the SMS provider, 2 worker processes, {RATE_SECONDS:g} s: "
                f"{overall:.2f} msgs/s over the run ({overall / RATE - 1:+.1%}); 10 s windows "
                f"{slowest:.1f} to {fastest:.1f} msgs/s   [target: within 10%]"
            )
            p50, p95, p99, n = bench_latency(smtp_port, env)
            out(
                f"(d) real time, 200 events/s for {RT_SECONDS:g} s through the API, 20 ms relay: accepted -> "
                f"Sent readable via GET: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms "
                f"({n} events)   [target p95 <= 1000 ms]"
            )
    finally:
        drop_databases(PREFIX)
    out(f"  total wall time {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
