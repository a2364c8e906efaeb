"""Delivery: iOS push through APNs over HTTP/2 (``mc_push_ios``) with the delivery pipeline, next to
a raw httpx HTTP/2 client with as many connections to the same APNs fake.

N push events (4 shards, one process per mapped delivery task, ``max_connections`` connections
each) against a local APNs (HTTP/2, TLS) that checks each provider token and request and answers
after 30 ms; the raw client (as many processes, threads and HTTP/2 connections) posts pre-built
payloads with one provider token. First to last arrival at the fake; every event Sent, every
message answered once, checked before printing; the ratio with its target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_apns_vs_raw.py   # make bench: all of them
    MC_BENCH_PUSH_EVENTS=...   # N (default 4000)
    MC_BENCH_SCALE=...         # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jwt
from devstack.push import FakeApns

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.push import (
    CONNECTIONS,
    EVENTS,
    LATENCY,
    SHARDS,
    apns_raw_worker,
    check_once_each,
    pipeline,
    rate,
    raw,
)
from bench.harness.report import Report, ratio, run

PREFIX = "mc_bench_delivery_apns_"


def measure(report: Report, databases: Databases) -> None:
    connections = CONNECTIONS * SHARDS
    report.add(
        f"APNs HTTP/2 push: fake (TLS) answering after {LATENCY * 1000:.0f} ms, {EVENTS} events, "
        f"{SHARDS} worker processes x max_connections {CONNECTIONS}"
    )
    with tempfile.TemporaryDirectory() as directory, FakeApns(Path(directory), latency=LATENCY) as apns:
        conn = {"AIRFLOW_CONN_MC_PUSH_IOS": env.connection(apns.connection(max_connections=CONNECTIONS))}
        with report.section("pipeline"):
            sent = pipeline(databases, "ios", conn)
        assert sent == EVENTS, f"{sent} of {EVENTS} sent"
        check_once_each([r.token for r in apns.received], EVENTS)
        assert apns.problems == []
        assert len(set(apns.answered_ids)) == EVENTS
        ours = rate([r.at for r in apns.received])
        jwts = len(apns.jwts)

        apns.received.clear()
        provider_token = jwt.encode(
            {"iss": apns.team_id, "iat": int(time.time())},
            apns.private_key,
            algorithm="ES256",
            headers={"kid": apns.key_id},
        )
        with report.section("raw"):
            raw(apns_raw_worker, apns.base_url, str(apns.ca_file), provider_token, apns.topic)
        check_once_each([r.token for r in apns.received], EVENTS)
        ceiling = rate([r.at for r in apns.received])
    report.add(
        f"  pipeline: {ours:7.0f} msgs/s ({jwts} provider token signed)   raw httpx HTTP/2, "
        f"{connections} connections: {ceiling:7.0f} msgs/s   {ratio('', ours / ceiling, '>= 0.7')}"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
