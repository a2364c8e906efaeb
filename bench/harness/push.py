"""What the push benchmarks share: the FCM and APNs fakes answering after a provider's latency, the
push events of the pipeline, and the raw clients (the ceilings), all over the same number of
connections.

The pipeline runs as the mapped delivery tasks do (one worker process per shard, each with
``max_connections`` connections to the provider); the raw client runs in as many processes with
as many threads, each thread with its own kept-alive httpx client and the messages built before
the clock starts. Both are timed from the first arrival at the fake to the last.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.delivery import deliver_in_workers
from messagecenter import execution
from messagecenter.core.settings import ProcessingSettings
from messagecenter.intake import store
from messagecenter.intake.decode import EventIn, event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates

EVENTS = env.size("MC_BENCH_PUSH_EVENTS", 4000)
LATENCY = 0.030  # seconds before each answer: a push provider's round trip
CONNECTIONS = 8  # the connections' max_connections: per delivery task and per raw process
SHARDS = 4
SETTINGS = ProcessingSettings(
    parallelism=SHARDS, min_shard_size=1, deliver_chunk=500, retry_backoff_seconds=0
)
TITLE, BODY = "Order {n}", "Your order {n} ships today"


def templates(channel: str) -> dict[str, Any]:
    return {
        "templates": [
            {
                "event_type": "ORDER",
                "channel": channel,
                "subject": TITLE.replace("{n}", "{{ ctx.n }}"),
                "text": BODY.replace("{n}", "{{ ctx.n }}"),
                "data": {"order": "{{ ctx.n }}"},
                "sound": "default",
            }
        ]
    }


def token(n: int) -> str:
    return f"{n:064x}"  # an APNs token's form: 64 hex digits


def events(channel: str, count: int) -> list[EventIn]:
    return [
        event_from_dict({"type": "ORDER", "channel": channel, "push_token": token(n), "ctx": {"n": n}})
        for n in range(count)
    ]


def pipeline(databases: Databases, channel: str, connections: dict[str, str]) -> int:
    """Deliver ``EVENTS`` push events of ``channel`` in ``SHARDS`` worker processes; messages sent."""
    dsn = databases.create(f"push_{channel}", "execution")
    with psycopg.connect(dsn, autocommit=True) as conn:
        publish_templates(conn, parse_templates(templates(channel)))
        store.insert_events(conn, "batch", events(channel, EVENTS), instance_id=1)
        shards = execution.split_queue(conn, "batch", SETTINGS)
        for shard in shards:
            execution.link_templates(conn, shard)
    assert len(shards) == SHARDS, shards
    os.environ.update(connections)  # the worker processes' connections
    return deliver_in_workers(dsn, shards)


def rate(times: list[float]) -> float:
    """Messages per second from the first arrival to the last."""
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def check_once_each(tokens: list[str], count: int) -> None:
    """Every event's message arrived, once."""
    assert len(tokens) == count, f"{len(tokens)} of {count} arrived"
    assert set(tokens) == {token(n) for n in range(count)}


# --- raw clients ---------------------------------------------------------------------------------

RawSend = Callable[[httpx.Client, int], None]


def raw(worker: Callable[..., int], *args: Any) -> None:
    """Run ``worker(process_index, *args)`` in ``SHARDS`` spawned processes at once, each sending
    its share of the ``EVENTS`` messages over ``CONNECTIONS`` threads."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(SHARDS) as pool:
        pool.map(_warm, range(SHARDS))
        sent = sum(pool.starmap(worker, [(i, *args) for i in range(SHARDS)]))
    assert sent == EVENTS, f"raw client: {sent} of {EVENTS} sent"


def _warm(_: int) -> None:
    time.sleep(0.2)


def share(index: int) -> range:
    """The messages of raw process ``index``."""
    return range(index, EVENTS, SHARDS)


def run_threads(make_client: Callable[[], httpx.Client], send: RawSend, numbers: range) -> int:
    """Send ``numbers`` over ``CONNECTIONS`` threads, each with its own client; the number sent."""
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def one(n: int) -> bool:
        if not hasattr(local, "client"):
            local.client = make_client()
            with lock:
                clients.append(local.client)
        send(local.client, n)
        return True

    with ThreadPoolExecutor(CONNECTIONS) as threads:
        sent = sum(threads.map(one, numbers))
    for client in clients:
        client.close()
    return sent


def fcm_raw_worker(index: int, url: str, access_token: str) -> int:
    """One raw FCM process: the v1 bodies built first, then posted with a bearer token."""
    bodies = {
        n: json.dumps(
            {
                "message": {
                    "token": token(n),
                    "notification": {"title": TITLE.format(n=n), "body": BODY.format(n=n)},
                    "data": {"order": str(n)},
                    "android": {"notification": {"sound": "default"}},
                }
            }
        ).encode()
        for n in share(index)
    }
    headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json; charset=UTF-8"}

    def send(client: httpx.Client, n: int) -> None:
        response = client.post(url, content=bodies[n], headers=headers)
        assert response.status_code == 200, response.text

    return run_threads(lambda: httpx.Client(timeout=30), send, share(index))


def apns_raw_worker(index: int, base_url: str, ca_file: str, provider_token: str, topic: str) -> int:
    """One raw APNs process: the payloads built first, then posted over HTTP/2."""
    import ssl
    import uuid

    verify = ssl.create_default_context(cafile=ca_file)
    payloads = {
        n: json.dumps(
            {
                "aps": {"alert": {"title": TITLE.format(n=n), "body": BODY.format(n=n)}, "sound": "default"},
                "order": str(n),
            },
            separators=(",", ":"),
        ).encode()
        for n in share(index)
    }
    expiration = str(int(time.time()) + 86_400)

    def send(client: httpx.Client, n: int) -> None:
        headers = {
            "authorization": f"bearer {provider_token}",
            "apns-topic": topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-expiration": expiration,
            "apns-id": str(uuid.UUID(int=n + 1)),
        }
        response = client.post(f"{base_url}/3/device/{token(n)}", content=payloads[n], headers=headers)
        assert response.status_code == 200, response.text

    return run_threads(lambda: httpx.Client(http2=True, timeout=30, verify=verify), send, share(index))
