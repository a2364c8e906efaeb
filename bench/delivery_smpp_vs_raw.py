"""Delivery over SMPP: (a) the delivery pipeline with the SMPP transport against an SMSC answering
each ``submit_sm`` after 20 ms, warm: the process delivers ``WARM_UP`` events first, whose cost is
reported apart (mostly ``airflow.sdk``, imported at the first connection lookup: an Airflow task
has it loaded already); next to (b) a raw smpplib client with as many binds and the same
window on the same SMSC (smpp34's server behind the test link, devstack/smsc.py, in a process of
its own as a remote SMSC would be); (c) receipts applied per second (``apply_receipts`` of N
receipts for N sent logs, in batches of 200).

    PYTHONPATH=plugins:. .venv/bin/python bench/delivery_smpp_vs_raw.py   # make bench: all of them
    MC_BENCH_SMPP_EVENTS=...       # N (default 2000)
    MC_BENCH_SCALE=...             # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg
import smpplib.client
import smpplib.smpp
from devstack.smsc import smsc_in_process

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.delivery import SETTINGS, create_database, events
from bench.harness.report import Report, ratio, run
from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import get_settings
from messagecenter.feedback.smpp import Receipt, apply_receipts
from messagecenter.intake import store

PREFIX = "mc_bench_delivery_smpp_"
EVENTS = env.size("MC_BENCH_SMPP_EVENTS", 2000)
LATENCY = 0.020
BINDS, WINDOW = 2, 10
WARM_UP = 20  # events delivered before the measure, in the same process


def bench_pipeline(databases: Databases, port: int) -> tuple[float, float, str]:
    """The pipeline's rate, warm (as a long-lived worker runs), and the seconds its first
    ``WARM_UP`` events took (imports, template compilation, first binds)."""
    dsn = create_database(databases, "pipeline")
    extra = f'{{"window": {WINDOW}, "max_connections": {BINDS}, "source_addr": "MC"}}'
    os.environ["AIRFLOW_CONN_MC_SMS"] = f"smpp://esme:pw@127.0.0.1:{port}?__extra__={extra}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        cold = deliver(conn, WARM_UP)  # a worker's first chunk imports and compiles what it uses, once
        elapsed = deliver(conn, EVENTS)
        sent = conn.execute("SELECT count(*) FROM mc.delivery_log WHERE status = 2").fetchone()
    assert sent == (WARM_UP + EVENTS,), sent
    return EVENTS / elapsed, cold, dsn


def deliver(conn: psycopg.Connection[Any], count: int) -> float:
    """Queue ``count`` SMS events and deliver them as batchEventsProcessing does; the seconds the
    deliver step took."""
    store.insert_events(conn, "batch", events("sms", count), instance_id=1)
    shards = execution.split_queue(conn, "batch", SETTINGS)
    for shard in shards:
        execution.link_templates(conn, shard)
    started = time.perf_counter()
    for shard in shards:
        execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    return time.perf_counter() - started


def bench_raw(port: int) -> float:
    """smpplib alone: each bind keeps WINDOW submits unanswered, a reader thread per bind."""

    def one_bind(count: int) -> None:
        client = smpplib.client.Client("127.0.0.1", port, allow_unknown_opt_params=True)
        client.connect()
        client.bind_transmitter(system_id="esme", password="pw")
        room = threading.Semaphore(WINDOW)
        answered = 0

        def read() -> None:
            nonlocal answered
            while answered < count:
                pdu = client.read_pdu()
                if pdu.command == "submit_sm_resp":
                    answered += 1
                    room.release()

        reader = threading.Thread(target=read)
        reader.start()
        for n in range(count):
            room.acquire()
            pdu = smpplib.smpp.make_pdu(
                "submit_sm",
                client=client,
                source_addr="MC",
                destination_addr=f"4479{n:08d}",
                short_message=b"Your code: 1234",
                registered_delivery=1,
            )
            client.send_pdu(pdu)
        reader.join()
        client.disconnect()

    started = time.perf_counter()
    threads = [threading.Thread(target=one_bind, args=(EVENTS // BINDS,)) for _ in range(BINDS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (EVENTS // BINDS * BINDS) / (time.perf_counter() - started)


def bench_receipts(dsn: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [
            r[0] for r in conn.execute("SELECT message_id FROM mc.delivery_log WHERE message_id IS NOT NULL")
        ]
        receipts = [Receipt(i, "DELIVRD", "000", f"id:{i} stat:DELIVRD err:000") for i in ids]
        started = time.perf_counter()
        applied = 0
        for n in range(0, len(receipts), 200):
            applied += apply_receipts(conn, receipts[n : n + 200], get_settings().feedback).applied
        elapsed = time.perf_counter() - started
    assert applied == len(ids), (applied, len(ids))
    return len(ids) / elapsed


def measure(report: Report, databases: Databases) -> None:
    report.add(
        f"SMPP benchmark: SMSC answering each submit_sm after {LATENCY * 1000:.0f} ms, "
        f"{BINDS} binds x window {WINDOW}"
    )
    with smsc_in_process(answer_delay=LATENCY, receipt=None) as port:
        pipeline, cold, dsn = bench_pipeline(databases, port)
        raw = bench_raw(port)
    report.add(
        f"  (a) pipeline, {EVENTS} events: {pipeline:7.0f} msgs/s   (b) raw smpplib: {raw:7.0f} msgs/s   "
        f"{ratio('', pipeline / raw, '>= 0.7')}"
    )
    report.add(
        f"      (a) warmed up first: its first {WARM_UP} events took {cold:.2f} s (once per worker process)"
    )
    rate = bench_receipts(dsn)
    report.add(f"  (c) receipts applied: {rate:7.0f} receipts/s   [target >= 1,000/s]")


if __name__ == "__main__":
    run(measure, PREFIX)
