"""Pipeline: (a) split -> link -> deliver -> status copy, next to (c) a naive per-event loop.

(a) our pipeline, pending -> Sent with the status copied (NULL transport), driven like the DAG (see
    ``bench/pipeline_vs_sql_floor.py``);
(c) a naive loop, one committed round trip per statement and event, in rounds (median: its
    commits wait on the WAL flush, whose latency drifts more than anything else measured here).
Both in fresh databases of the same server, in this run; printed as the ratio (a)/(c), with the
target (2 cores) in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/pipeline_vs_naive_loop.py   # make bench: all of them
    MC_BENCH_DSN=...               # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_PIPELINE_EVENTS=...   # events of (a) (default 200000)
    MC_BENCH_WORKERS=...           # worker processes of the mapped link/deliver steps (default 2)
    MC_BENCH_NAIVE_SAMPLE=...      # events per round of the naive loop (c) (default 1000)
    MC_BENCH_NAIVE_ROUNDS=...      # rounds of the naive loop (c) (default 5)
    MC_BENCH_SCALE=...             # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import os
import statistics
import time

import psycopg
from psycopg.rows import dict_row

from bench.harness import env
from bench.harness.databases import Databases, scalar
from bench.harness.pipeline import (
    SENT,
    create_database,
    insert_pending,
    measure_pipeline,
    report_pipeline,
    status_counts,
)
from bench.harness.report import Report, ratio, run
from messagecenter.delivery import NullTransport, OutgoingMessage
from messagecenter.templates.rendering import Renderer
from messagecenter.templates.spec import PublishedTemplate

PREFIX = "mc_bench_pipeline_naive_"
NAIVE_SAMPLE = env.size("MC_BENCH_NAIVE_SAMPLE", 1000)
NAIVE_ROUNDS = int(os.environ.get("MC_BENCH_NAIVE_ROUNDS", "5"))


def bench_naive(dsn: str, sample: int, rounds: int) -> list[float]:
    """One committed round trip per statement and event: the anti-pattern the set-based steps avoid.

    ``rounds`` rounds of ``sample`` events each; returns the rate of each round.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM mc.batch_event WHERE status = 0 ORDER BY id")]
    assert len(ids) == sample * rounds
    return [_naive_round(dsn, ids[i * sample : (i + 1) * sample]) for i in range(rounds)]


def _naive_round(dsn: str, ids: list[int]) -> float:
    renderer = Renderer()
    transport = NullTransport()
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        start = time.perf_counter()
        for event_id in ids:
            event = cur.execute("SELECT * FROM mc.batch_event WHERE id = %s", (event_id,)).fetchone()
            assert event is not None
            row = cur.execute(
                "SELECT id, template_id, version, event_type, channel, subject, html, text, data"
                " FROM mc.published_template WHERE event_type = %s AND channel = %s"
                " ORDER BY published_at DESC, version DESC LIMIT 1",
                (event["event_type"], event["channel"]),
            ).fetchone()
            assert row is not None
            template = PublishedTemplate(**row)
            cur.execute(
                "UPDATE mc.batch_event SET status = 1, template_id = %s, template_version = %s,"
                " last_modified = now() WHERE id = %s",
                (template.template_id, template.version, event_id),
            )
            fields = {"id": event_id, "type": event["event_type"], "email": event["email"]}
            rendered = renderer.render(template, event=fields, ctx=event["ctx"])
            address = event["email"].strip().lower()
            sent = transport.send(
                OutgoingMessage(event_id, 0, address, rendered.subject, rendered.html, rendered.text)
            )
            cur.execute(
                "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address, template_id,"
                " template_version, message_id, provider_answer)"
                " VALUES (%s, 'batch', 2, 0, %s, %s, %s, %s, %s)",
                (
                    event_id,
                    address,
                    template.template_id,
                    template.version,
                    sent.message_id,
                    sent.provider_answer,
                ),
            )
            cur.execute(
                "UPDATE mc.batch_event SET status = 2, processed = now(), last_modified = now()"
                " WHERE id = %s",
                (event_id,),
            )
        return len(ids) / (time.perf_counter() - start)


def measure(report: Report, databases: Databases) -> None:
    ours = measure_pipeline(report, databases)
    with report.section("(c) naive"):
        naive_dsn = create_database(databases, "naive")
        insert_pending(naive_dsn, "batch", NAIVE_SAMPLE * NAIVE_ROUNDS)
        naive_rounds = bench_naive(naive_dsn, NAIVE_SAMPLE, NAIVE_ROUNDS)
        naive = statistics.median(naive_rounds)
        assert status_counts(naive_dsn, "batch") == {SENT: NAIVE_SAMPLE * NAIVE_ROUNDS}
        assert scalar(naive_dsn, "SELECT count(*) FROM mc.delivery_log") == NAIVE_SAMPLE * NAIVE_ROUNDS

    report_pipeline(report, ours)
    report.add(
        f"(c) naive per-event loop, 5 statements per event, each its own transaction;"
        f" {NAIVE_ROUNDS} rounds of {NAIVE_SAMPLE} events: median {naive:.0f} events/s"
        f" (rounds: {', '.join(f'{r:.0f}' for r in naive_rounds)})"
    )
    report.add(f"      {ratio('(a)/(c)', ours.rate / naive, '>= 20', digits=1)}")


if __name__ == "__main__":
    run(measure, PREFIX)
