"""Pipeline: (d) e-mail through ``deliver_shard`` + ``SmtpTransport`` next to a raw ``smtplib`` loop.

The same events of the mix, rendered by the same templates, to the same in-process SMTP sink that
answers at once; one connection each (like for like: ``bench/delivery_*.py`` measures the concurrent
path against a provider's latency). Printed as the ratio ours/raw, target (2 cores) in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/pipeline_email_vs_smtplib.py   # make bench: all of them
    MC_BENCH_DSN=...      # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_EMAILS=...   # e-mails (default 2000)
    MC_BENCH_SCALE=...    # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import os
import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import psycopg

from bench.harness import env
from bench.harness.databases import Databases, scalar
from bench.harness.pipeline import (
    HEADING,
    SENDER,
    TEMPLATES,
    create_database,
    event_body,
    insert_pending,
    status_counts,
)
from bench.harness.report import Report, ratio, run
from bench.harness.sinks import CountingSmtp, SmtpServer
from messagecenter import execution
from messagecenter.airflow.transports import smtp_transport
from messagecenter.core.settings import ProcessingSettings
from messagecenter.templates.files import parse_templates
from messagecenter.templates.rendering import Renderer
from messagecenter.templates.spec import PublishedTemplate

PREFIX = "mc_bench_pipeline_email_"
EMAILS = env.size("MC_BENCH_EMAILS", 2000)


def raw_messages(count: int) -> list[EmailMessage]:
    """Equivalent messages (same templates, same headers), rendered before the clock starts."""
    renderer = Renderer()
    templates = {
        spec.event_type: PublishedTemplate(i, i, 1, spec.event_type, 0, spec.subject, spec.html, spec.text)
        for i, spec in enumerate(parse_templates(TEMPLATES), 1)
    }
    mails = []
    for n in range(count):
        body = event_body(n)
        rendered = renderer.render(templates[body["type"]], event={"id": n}, ctx=body["ctx"])
        mail = EmailMessage()
        mail["Subject"] = rendered.subject or ""
        mail["From"] = SENDER
        mail["To"] = body["email"].lower()
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid(idstring=f"mc{n}", domain="example.com")
        mail["X-MC-Event-Id"] = str(n)
        mail.set_content(rendered.text or "")
        mail.add_alternative(rendered.html or "", subtype="html")
        mails.append(mail)
    return mails


def bench_email(dsn: str, count: int) -> tuple[float, float]:
    """Messages/s of our delivery step and of the raw loop, each checked at the sink."""
    settings = ProcessingSettings()
    insert_pending(dsn, "batch", count)
    with psycopg.connect(dsn) as conn:
        shards = execution.split_queue(conn, "batch", settings)
        for shard in shards:
            execution.link_templates(conn, shard)
    mails = raw_messages(count)
    handler = CountingSmtp()
    with SmtpServer(handler) as sink:
        # Like for like with the raw loop: one connection, a sink that answers at once.
        os.environ["AIRFLOW_CONN_MC_SMTP"] = env.connection(
            sink.connection(), from_email=SENDER, timeout=5, retry_limit=0, max_connections=1
        )
        with smtp_transport("mc_smtp") as warm:  # a worker has Airflow imported before its task runs
            assert warm.connections_opened == 1, "cannot reach the SMTP sink"
        with psycopg.connect(dsn) as conn:
            start = time.perf_counter()
            for shard in shards:
                execution.deliver_shard(
                    conn, shard, settings, transport_for=lambda channel: smtp_transport("mc_smtp")
                )
            ours = count / (time.perf_counter() - start)
        assert handler.count == count, f"sink got {handler.count} of our {count} messages"
        assert status_counts(dsn, "batch") == {1: count}
        logs = scalar(dsn, "SELECT count(*) FROM mc.delivery_log WHERE status = 2")
        assert logs == count, f"{logs} Sent logs for {count} e-mails"

        handler.count = 0
        start = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as client:
            for mail in mails:
                client.send_message(mail, from_addr=SENDER, to_addrs=[mail["To"]])
        raw = count / (time.perf_counter() - start)
        assert handler.count == count, f"sink got {handler.count} of the raw {count} messages"
    return ours, raw


def measure(report: Report, databases: Databases) -> None:
    with report.section("(d) e-mail"):
        ours, raw = bench_email(create_database(databases, "email"), EMAILS)
    report.add(HEADING)
    report.add(f"(d) e-mail to an in-process aiosmtpd sink, {EMAILS} messages")
    report.add(f"      ours: deliver_shard + SmtpTransport (one process)  {ours:8.0f} msgs/s")
    report.add(f"      raw: one smtplib connection, pre-rendered messages {raw:8.0f} msgs/s")
    report.add(f"      {ratio('ours/raw', ours / raw, '>= 0.8')}")


if __name__ == "__main__":
    run(measure, PREFIX)
