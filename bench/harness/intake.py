"""What the intake benchmarks share: their events (REST JSON and Campaign's SOAP XML), their size,
and a client of the standalone API on a fresh execution database, warmed up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench.harness import env
from bench.harness.api import AUTH, TOKEN, standalone_api
from messagecenter.db.queries import event_table

EVENTS = env.size("MC_BENCH_EVENTS", 50_000)  # events per batch measurement
JSON = {"Content-Type": "application/json"}


def event_body(n: int) -> dict[str, Any]:
    return {
        "type": "ORDER_CONFIRMATION",
        "channel": "email",
        "email": f"customer{n}@example.com",
        "language": "en",
        "ctx": {"firstName": "Ann", "orderId": f"A-{n}", "total": 42.5, "items": [{"sku": "X1", "qty": 2}]},
    }


def batch_bodies(per_request: int, total: int) -> list[bytes]:
    """``total`` events as REST batch bodies of ``per_request`` events, encoded before any clock
    starts: we time the API, not the client's JSON encoder."""
    return [
        json.dumps({"events": [event_body(n) for n in range(i, min(i + per_request, total))]}).encode()
        for i in range(0, total, per_request)
    ]


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


@contextmanager
def api_client(dsn: str) -> Iterator[httpx.Client]:
    """A client of the standalone API on ``dsn``, after one batch event (the warm-up, stored)."""
    with (
        standalone_api(dsn) as base,
        httpx.Client(base_url=base, headers=AUTH, timeout=120) as client,
    ):
        client.post("/api/v1/events/batch", json={"events": [event_body(0)]}).raise_for_status()
        yield client


def count(dsn: str, queue: str) -> int:
    """Events stored in ``queue``'s table."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(event_table(queue))).fetchone()
    assert row is not None
    return int(row[0])
