"""Delivery: Android push through FCM HTTP v1 (``mc_push_android``) with the delivery pipeline, next
to a raw httpx client with as many connections to the same FCM fake.

N push events (4 shards, one process per mapped delivery task, ``max_connections`` connections
each) against a local FCM v1 that checks each access token and message and answers after 30 ms;
the raw client (as many processes, threads and kept-alive connections) posts pre-built v1 bodies
with one access token. First to last arrival at the fake; every event Sent, every message arrived
once, checked before printing; the ratio with its target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_fcm_vs_raw.py   # make bench: all of them
    MC_BENCH_PUSH_EVENTS=...   # N (default 4000)
    MC_BENCH_SCALE=...         # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

from devstack.push import FakeFcm, OAuthServer

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.push import (
    CONNECTIONS,
    EVENTS,
    LATENCY,
    SHARDS,
    check_once_each,
    fcm_raw_worker,
    pipeline,
    rate,
    raw,
)
from bench.harness.report import Report, ratio, run

PREFIX = "mc_bench_delivery_fcm_"


def measure(report: Report, databases: Databases) -> None:
    connections = CONNECTIONS * SHARDS
    report.add(
        f"FCM HTTP v1 push: fake answering after {LATENCY * 1000:.0f} ms, {EVENTS} events, "
        f"{SHARDS} worker processes x max_connections {CONNECTIONS}"
    )
    with OAuthServer() as oauth, FakeFcm(oauth, latency=LATENCY) as fcm:
        conn = {"AIRFLOW_CONN_MC_PUSH_ANDROID": env.connection(fcm.connection(max_connections=CONNECTIONS))}
        with report.section("pipeline"):
            sent = pipeline(databases, "android", conn)
        assert sent == EVENTS, f"{sent} of {EVENTS} sent"
        check_once_each([r.token for r in fcm.received], EVENTS)
        assert fcm.problems == []
        assert fcm.refused_tokens == []
        ours = rate([r.at for r in fcm.received])
        tokens = len(oauth.issued)

        fcm.received.clear()
        url = f"{fcm.base_url}/v1/projects/{fcm.project_id}/messages:send"
        with report.section("raw"):
            raw(fcm_raw_worker, url, oauth.issue()[0])
        check_once_each([r.token for r in fcm.received], EVENTS)
        ceiling = rate([r.at for r in fcm.received])
    report.add(
        f"  pipeline: {ours:7.0f} msgs/s ({tokens} access tokens fetched)   raw httpx, {connections} "
        f"connections: {ceiling:7.0f} msgs/s   {ratio('', ours / ceiling, '>= 0.7')}"
    )


if __name__ == "__main__":
    run(measure, PREFIX)
