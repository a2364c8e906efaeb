"""Intake: SOAP ``PushEvents`` (Campaign's interface) next to the REST batch, the same events.

1,000 events per call through the same uvicorn process, the two alternating request by request (so
both see the same table size and machine load). Target (2 cores): SOAP >= 0.5x the REST batch.

    PYTHONPATH=plugins:. .venv/bin/python bench/intake_soap_vs_rest.py   # make bench: all of them
    MC_BENCH_DSN=...      # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_EVENTS=...   # events through each interface (default 50000)
    MC_BENCH_SCALE=...    # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import time

import httpx

from bench.harness.databases import Databases
from bench.harness.intake import EVENTS, JSON, api_client, batch_bodies, count, soap_push_events
from bench.harness.report import Report, ratio, run

PREFIX = "mc_bench_intake_soap_"
PER_REQUEST = 1_000


def bench_soap_vs_rest(client: httpx.Client, per_request: int, total: int) -> tuple[float, float]:
    """SOAP PushEvents and the REST batch, the same events, alternating request by request:
    (SOAP events/s, REST events/s)."""
    rest_bodies = batch_bodies(per_request, total)
    soap_bodies = [soap_push_events(i, min(per_request, total - i)) for i in range(0, total, per_request)]
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


def measure(report: Report, databases: Databases) -> None:
    api_dsn = databases.create("api", "execution")
    with api_client(api_dsn) as client:
        soap, rest = bench_soap_vs_rest(client, PER_REQUEST, EVENTS)
    assert count(api_dsn, "batch") == 2 * EVENTS + 1, "the API lost or duplicated events"

    out = report.add
    out(f"intake benchmark: SOAP vs REST, the same {EVENTS} events, {PER_REQUEST:,}/request, alternating")
    out(f"  REST batch                {rest:10.0f} events/s")
    out(f"  SOAP PushEvents           {soap:10.0f} events/s   {ratio('SOAP/REST', soap / rest, '>= 0.50')}")


if __name__ == "__main__":
    run(measure, PREFIX)
