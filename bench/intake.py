"""Intake benchmark: the API (batch and single) next to the bare COPY floor, in one run.

Runs the API in a real uvicorn process against a fresh database and prints events/s for each path
and the API/COPY ratio. Targets (2 cores): batch API >= 0.3x bare COPY; single push p95 <= 10 ms;
SOAP ``PushEvents`` (Campaign's interface, 1,000 events per call) >= 0.5x the REST batch of the same
events, 1,000 per request, through the same process (the two alternate, request by request).

    make bench            # or: PYTHONPATH=plugins .venv/bin/python bench/intake.py
    MC_BENCH_DSN=...      # admin DSN of the server to use (default: local 127.0.0.1:5432)
    MC_BENCH_EVENTS=...   # events per batch measurement (default 50000)
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from databases import start_api as api_process  # noqa: E402
from messagecenter.core.ids import make_event_id  # noqa: E402
from messagecenter.db import schema  # noqa: E402
from messagecenter.db.queries import event_table  # noqa: E402
from messagecenter.intake import store  # noqa: E402
from messagecenter.intake.decode import event_from_dict  # noqa: E402

ADMIN_DSN = os.environ.get("MC_BENCH_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
EVENTS = int(os.environ.get("MC_BENCH_EVENTS", "50000"))
SINGLE = int(os.environ.get("MC_BENCH_SINGLE", "2000"))
TOKEN = "bench-token"
JSON = {"Content-Type": "application/json"}


def event_body(n: int) -> dict:
    return {
        "type": "ORDER_CONFIRMATION",
        "channel": "email",
        "email": f"customer{n}@example.com",
        "language": "en",
        "ctx": {"firstName": "Ann", "orderId": f"A-{n}", "total": 42.5, "items": [{"sku": "X1", "qty": 2}]},
    }


def soap_event(n: int) -> str:
    """``event_body(n)`` as Campaign's XML (ctx by the SOAP mapping: the same data, as XML carries it)."""
    return (
        f'<batchEvent type="ORDER_CONFIRMATION" wishedChannel="0" email="customer{n}@example.com"'
        f' language="en"><ctx><firstName>Ann</firstName><orderId>A-{n}</orderId><total>42.5</total>'
        '<items><item sku="X1" qty="2"/></items></ctx></batchEvent>'
    )


def soap_push_events(first: int, count: int) -> bytes:
    events = "".join(soap_event(n) for n in range(first, first + count))
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:urn="urn:nms:batchEvent"><soapenv:Header/><soapenv:Body><urn:PushEvents>'
        f"<urn:sessiontoken>mc/{TOKEN}</urn:sessiontoken><urn:domEventCollection><Events>{events}"
        "</Events></urn:domEventCollection></urn:PushEvents></soapenv:Body></soapenv:Envelope>"
    ).encode()


def fresh_database(name: str) -> str:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(ADMIN_DSN)
    params["dbname"] = name
    dsn = make_conninfo(**params)
    with psycopg.connect(dsn) as conn:
        schema.upgrade(conn, "execution")
    return dsn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(dsn: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    p = conninfo_to_dict(dsn)
    host, port_pg = p.get("host", "localhost"), p.get("port", 5432)
    uri = f"postgresql://{p.get('user', 'postgres')}@{host}:{port_pg}/{p['dbname']}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "plugins"),
        "AIRFLOW_CONN_MC_EXECUTION": uri,
        "MC_API_TOKENS": TOKEN,
    }
    proc = api_process(port, env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if (
                httpx.get(f"{base}/api/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
                == 200
            ):
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API did not start")


def count(dsn: str, queue: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(event_table(queue))).fetchone()[0]


def bench_batch_api(client: httpx.Client, per_request: int, total: int) -> float:
    # Bodies are encoded before the clock starts: we time the API, not the client's JSON encoder.
    bodies = [
        json.dumps({"events": [event_body(n) for n in range(i, i + per_request)]}).encode()
        for i in range(0, total, per_request)
    ]
    start = time.perf_counter()
    for body in bodies:
        response = client.post("/api/v1/events/batch", content=body, headers=JSON)
        response.raise_for_status()
    return total / (time.perf_counter() - start)


def bench_soap_vs_rest(client: httpx.Client, per_request: int, total: int) -> tuple[float, float]:
    """SOAP PushEvents and the REST batch, the same events, alternating request by request (so both
    see the same table size and machine load): (SOAP events/s, REST events/s)."""
    rest_bodies = [
        json.dumps({"events": [event_body(n) for n in range(i, i + per_request)]}).encode()
        for i in range(0, total, per_request)
    ]
    soap_bodies = [soap_push_events(i, per_request) for i in range(0, total, per_request)]
    soap_headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "nms:batchEvent#PushEvents"}
    soap_time = rest_time = 0.0
    for rest_body, soap_body in zip(rest_bodies, soap_bodies, strict=True):
        start = time.perf_counter()
        client.post("/api/v1/events/batch", content=rest_body, headers=JSON).raise_for_status()
        rest_time += time.perf_counter() - start
        start = time.perf_counter()
        response = client.post("/nl/jsp/soaprouter.jsp", content=soap_body, headers=soap_headers)
        soap_time += time.perf_counter() - start
        response.raise_for_status()
        assert b"PushEventsResponse" in response.content, response.text[:1000]
    return total / soap_time, total / rest_time


def bench_single_api(client: httpx.Client, n: int) -> tuple[float, float, float]:
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        client.post("/api/v1/events/rt", json=event_body(i)).raise_for_status()
        latencies.append(time.perf_counter() - t0)
    rate = n / (time.perf_counter() - start)
    q = statistics.quantiles(latencies, n=100)
    return rate, q[49] * 1000, q[94] * 1000


def bench_bare_copy(dsn: str, total: int) -> float:
    """The floor: the same rows, already validated and serialised, COPY'd straight in."""
    events = [event_from_dict(event_body(n)) for n in range(total)]
    rows = [store.intake_row(make_event_id(2, n + 1), e, None) for n, e in enumerate(events)]
    copy_sql = sql.SQL("COPY mc.rt_event ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, store.INTAKE_COLUMNS))
    )
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        with conn.cursor().copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return total / (time.perf_counter() - start)


def main() -> None:
    api_dsn = fresh_database("mc_bench_intake")
    floor_dsn = fresh_database("mc_bench_floor")
    proc, base = start_api(api_dsn)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
            client.post(
                "/api/v1/events/batch", json={"events": [event_body(0)]}
            ).raise_for_status()  # warm up
            batch_1k = bench_batch_api(client, 1_000, EVENTS)
            batch_10k = bench_batch_api(client, 10_000, EVENTS)
            soap_1k, rest_1k = bench_soap_vs_rest(client, 1_000, EVENTS)
            single_rate, p50, p95 = bench_single_api(client, SINGLE)
    finally:
        proc.terminate()
        proc.wait()
    assert count(api_dsn, "batch") == 4 * EVENTS + 1, "batch API lost or duplicated events"
    assert count(api_dsn, "rt") == SINGLE, "single API lost or duplicated events"
    floor = bench_bare_copy(floor_dsn, EVENTS)
    assert count(floor_dsn, "rt") == EVENTS

    print(f"intake benchmark ({EVENTS} events per batch measurement, {SINGLE} single pushes)")
    print(f"  bare COPY floor           {floor:10.0f} events/s")
    print(f"  batch API, 1,000/request  {batch_1k:10.0f} events/s   ratio API/COPY {batch_1k / floor:.2f}x")
    print(f"  batch API, 10,000/request {batch_10k:10.0f} events/s   ratio API/COPY {batch_10k / floor:.2f}x")
    print(f"  single-event API          {single_rate:10.0f} events/s   p50 {p50:.2f} ms   p95 {p95:.2f} ms")
    print("  side by side, the same events, 1,000/request, alternating:")
    print(f"    REST batch              {rest_1k:10.0f} events/s")
    print(f"    SOAP PushEvents         {soap_1k:10.0f} events/s   ratio SOAP/REST {soap_1k / rest_1k:.2f}x")
    print("  targets: batch >= 0.30x COPY; single p95 <= 10 ms; SOAP >= 0.50x REST")


if __name__ == "__main__":
    main()
