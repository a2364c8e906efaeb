"""Delivery through Twilio's REST API: ``batchEventsProcessing``'s deliver step with ``mc_sms`` set to
``provider: twilio``, next to a raw httpx loop posting the same requests with as many connections.

The sink plays Twilio's ``Messages.json`` (HTTP basic auth, a form; 201 with a Message resource)
and answers each request after 50 ms; it notes each message's event from the ``mc_event_id`` of its
``StatusCallback`` URL (``MC_PUBLIC_URL`` is set, so every message asks for one, as in production).
N SMS events (4 shards, one worker process per mapped delivery task), first to last arrival; the raw
loop sends pre-encoded forms over threads, one kept-alive client each. Every event Sent, every
message arrived once, checked before printing; the ratio with its target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_twilio_vs_raw.py   # make bench: all of them
    MC_BENCH_DSN=...               # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_DELIVERY_EVENTS=...   # N (default 4000)
    MC_BENCH_SCALE=...             # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import psycopg
from devstack.sinks import HttpServer

from bench.harness.databases import Databases
from bench.harness.delivery import BATCH_EVENTS, SETTINGS, SHARDS, create_database, deliver_in_workers, events
from bench.harness.report import Report, ratio, run
from bench.harness.sinks import Arrivals
from messagecenter import execution
from messagecenter.core.settings import get_settings
from messagecenter.intake import store

PREFIX = "mc_bench_delivery_twilio_"
LATENCY = 0.050
CONNECTIONS = 32  # max_connections of the connection (the HTTP transport's default), per worker
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "bench-auth-token"
PUBLIC_URL = "https://mc.example.com"
PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
AUTHORIZATION = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


class _TwilioHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as Twilio's
    # Headers and body are two writes: without TCP_NODELAY the body would wait for the client's
    # delayed ACK (40 ms), a latency no real provider adds.
    disable_nagle_algorithm = True
    server: TwilioSink

    def do_POST(self) -> None:
        form = dict(parse_qsl(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
        time.sleep(self.server.latency)
        if self.path != PATH or self.headers.get("Authorization") != AUTHORIZATION:
            status, body = 401, {"code": 20003, "message": "Authenticate", "status": 401}
        else:
            query = dict(parse_qsl(urlsplit(form.get("StatusCallback", "")).query))
            self.server.arrivals.add(int(query.get("mc_event_id", 0)))
            sid = f"SM{next(self.server.ids):032x}"
            status, body = (
                201,
                {"sid": sid, "status": "queued", "to": form.get("To"), "body": form.get("Body")},
            )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TwilioSink(HttpServer):
    """Twilio's Messages API answering each message after ``latency`` seconds."""

    request_queue_size = 256  # every connection of every worker at once

    def __init__(self, latency: float, arrivals: Arrivals) -> None:
        super().__init__(_TwilioHandler, poll_interval=0.05)
        self.latency = latency
        self.arrivals = arrivals
        self.ids = itertools.count(1)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its kept-alive connection at the end: expected

    def twilio_connection(self) -> str:
        extra: dict[str, Any] = {
            "provider": "twilio",
            "base_url": f"http://127.0.0.1:{self.port}",
            "from": "+15005550006",
            "max_connections": CONNECTIONS,
        }
        return json.dumps({"conn_type": "http", "login": ACCOUNT_SID, "password": AUTH_TOKEN, "extra": extra})


def bench_pipeline(databases: Databases, sink: TwilioSink) -> float:
    """Messages/s of the mapped delivery tasks over ``BATCH_EVENTS`` linked SMS events."""
    dsn = create_database(databases, "twilio")
    with psycopg.connect(dsn, autocommit=True) as conn:
        store.insert_events(conn, "batch", events("sms", BATCH_EVENTS), instance_id=1)
        shards = execution.split_queue(conn, "batch", SETTINGS)
        for shard in shards:
            execution.link_templates(conn, shard)
        ids = [row[0] for row in conn.execute("SELECT id FROM mc.batch_event")]
    assert len(shards) == SHARDS, shards
    sink.arrivals.reset()
    os.environ.update({"AIRFLOW_CONN_MC_SMS": sink.twilio_connection(), "MC_PUBLIC_URL": PUBLIC_URL})
    get_settings.cache_clear()
    sent = deliver_in_workers(dsn, shards)
    assert sent == BATCH_EVENTS, f"{sent} of {BATCH_EVENTS} sent"
    assert sorted(sink.arrivals.events) == sorted(ids), "each event's message arrived once"
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM mc.delivery_log WHERE message_id LIKE 'SM%'").fetchone()
    assert stored is not None
    assert stored[0] == BATCH_EVENTS, "every sid kept in the delivery log"
    return sink.arrivals.rate()


def raw_twilio(port: int, connections: int, count: int, arrivals: Arrivals) -> float:
    """Messages/s of ``count`` pre-encoded Twilio requests over ``connections`` concurrent clients."""
    local = threading.local()
    verify = ssl.create_default_context()  # one for all (each would load the CA bundle)
    callback = f"{PUBLIC_URL}/api/v1/feedback/twilio"
    bodies = [
        urlencode(
            {
                "To": f"+336{n:08d}",
                "From": "+15005550006",
                "Body": f"Your code: {n}",
                "StatusCallback": f"{callback}?mc_event_id={n + 1}",
            }
        )
        for n in range(count)
    ]
    url = f"http://127.0.0.1:{port}{PATH}"
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}

    def send(body: str) -> None:
        if not hasattr(local, "client"):
            # TCP_NODELAY as asyncio (our transport's client) sets it: the body, written after the
            # headers, does not wait for the sink's delayed ACK.
            transport = httpx.HTTPTransport(verify=verify, socket_options=[NODELAY])
            local.client = httpx.Client(timeout=30, transport=transport, auth=(ACCOUNT_SID, AUTH_TOKEN))
        response = local.client.post(url, content=body, headers=headers)
        assert response.status_code == 201, response.text

    arrivals.reset()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(send, bodies))
    assert sorted(arrivals.events) == list(range(1, count + 1))
    return arrivals.rate()


def measure(report: Report, databases: Databases) -> None:
    connections = CONNECTIONS * SHARDS
    report.add(
        f"Twilio SMS benchmark: sink answering after {LATENCY * 1000:.0f} ms, max_connections {CONNECTIONS} "
        f"per worker"
    )
    arrivals = Arrivals()
    with TwilioSink(LATENCY, arrivals) as sink:
        with report.section("pipeline"):
            ours = bench_pipeline(databases, sink)
        with report.section("raw"):
            raw = raw_twilio(sink.port, connections, BATCH_EVENTS, arrivals)
    report.add(
        f"  batch, {BATCH_EVENTS} events, {SHARDS} shards in {SHARDS} worker processes: {ours:7.0f} msgs/s   "
        f"raw httpx loop, {connections} connections: {raw:7.0f} msgs/s   {ratio('', ours / raw, '>= 0.7')}"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
