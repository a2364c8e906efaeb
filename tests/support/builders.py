"""What tests build their cases from: databases, published templates, pushed events, a seeded
dashboard and its feedback, archiving runs, the CLI in a subprocess, the installed package's mark,
the Dockerfile's instructions.

Several test folders need these; a test module imports them from here, never from another test module.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from messagecenter import execution
from messagecenter.airflow.transports import transport_for
from messagecenter.control.archiving import archive_interval
from messagecenter.core.settings import FeedbackSettings, ProcessingSettings
from messagecenter.core.types import Channel
from messagecenter.feedback.apply import Feedback, apply_feedback
from messagecenter.feedback.quarantine import AddressStatus, set_status
from messagecenter.feedback.rules import qualifier
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates

REPO = Path(__file__).resolve().parents[2]

# The bearer token of the API tests' client (tests/api/conftest.py).
API_TOKEN = "test-token-1"


# --- Databases -------------------------------------------------------------------------------------


def dsn_for(admin_dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def create_database(admin_dsn: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        admin.execute(query)
    return dsn_for(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def airflow_uri(dsn: str) -> str:
    """The ``AIRFLOW_CONN_*`` URI form of a libpq DSN."""
    p = conninfo_to_dict(dsn)
    auth = p.get("user", "postgres") + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p['dbname']}"


# --- Templates and events of the execution tests ---------------------------------------------------

SETTINGS = ProcessingSettings(retry_backoff_seconds=0, max_tries=3, deliver_chunk=50, min_shard_size=10)

TEMPLATES = {
    "templates": [
        {
            "event_type": "ORDER_CONFIRMATION",
            "channel": "email",
            "subject": "Order {{ ctx.orderId }} confirmed",
            "html": "<p>Hello {{ ctx.firstName }}</p>",
            "text": "Hello {{ ctx.firstName }}, order {{ ctx.orderId }}",
        },
        {"event_type": "OTP", "channel": "sms", "text": "Your code is {{ ctx.code }}"},
        {
            "event_type": "SHIPPED",
            "channel": "android",
            "subject": "Shipped",
            "text": "Order {{ ctx.orderId }}",
        },
    ]
}


def publish(conn: psycopg.Connection, document: dict[str, Any] = TEMPLATES) -> None:
    publish_templates(conn, parse_templates(document))


def push(conn: psycopg.Connection, queue: str, *events: dict[str, Any]) -> list[int]:
    return store.insert_events(conn, queue, [event_from_dict(e) for e in events], instance_id=1).ids


# --- Counted SMS events: the dashboard's and the archiving's ---------------------------------------


def push_sms(conn: psycopg.Connection[Any], queue: str, count: int, instance_id: int = 1) -> list[int]:
    events = [
        event_from_dict({"type": "OTP", "channel": "sms", "mobile_phone": f"+3361{n:07}"})
        for n in range(count)
    ]
    return store.insert_events(conn, queue, events, instance_id=instance_id).ids  # type: ignore[arg-type]


def seed(conn: psycopg.Connection) -> None:
    """rt: 3 pending (waiting 5 s), 96 Sent in 12 s, 4 Failed; batch: 1 Sent 2 hours ago."""
    push_sms(conn, "rt", 103)
    conn.execute("UPDATE mc.rt_event SET created = now() - interval '30 seconds'")
    conn.execute(
        "UPDATE mc.rt_event SET status = 2, processed = created + interval '12 seconds' "
        "WHERE id IN (SELECT id FROM mc.rt_event ORDER BY id LIMIT 96)"
    )
    conn.execute(
        "UPDATE mc.rt_event SET status = 4, processed = created + interval '12 seconds' "
        "WHERE id IN (SELECT id FROM mc.rt_event WHERE status = 0 ORDER BY id LIMIT 4)"
    )
    conn.execute("UPDATE mc.rt_event SET created = now() - interval '5 seconds' WHERE status = 0")
    push_sms(conn, "batch", 1)
    conn.execute(
        "UPDATE mc.batch_event SET status = 2, created = now() - interval '2 hours', "
        "processed = now() - interval '2 hours'"
    )


# The feedback the page, the doctor and the metrics show: 200 e-mails sent today and what came back.
SENT = 200
FIRST_EVENT = 9_000_000
UNQUALIFIED = "the gateway frobnicated the envelope"


def seed_feedback(conn: psycopg.Connection[Any]) -> None:
    """200 e-mails sent today; through the real feedback path: 5 hard bounces (user unknown), one
    failure no rule knows, one complaint, one receipt for no known message; one address denylisted
    by an operator. Bounce rate 3 % (warning), complaint rate 0.5 % (past Gmail's 0.3 % line)."""
    conn.execute(
        "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address) "
        "SELECT %(first)s + i, 'batch', 2, 0, 'user' || i || '@example.com' "
        "FROM generate_series(0, %(n)s - 1) i",
        {"first": FIRST_EVENT, "n": SENT},
    )
    items = [
        Feedback(
            "mailbox",
            "failed",
            event_id=FIRST_EVENT + i,
            text=f"550 5.1.1 <user{i}@example.com>: Recipient address rejected: User unknown",
            status="5.1.1",
        )
        for i in range(5)
    ]
    items += [
        Feedback("mailbox", "failed", event_id=FIRST_EVENT + 5, text=UNQUALIFIED, severity="permanent"),
        Feedback("mailbox", "complaint", event_id=FIRST_EVENT + 6),
        Feedback("twilio", "delivered", message_id="SM-nobody-knows"),
    ]
    apply_feedback(conn, items, qualify=qualifier(conn), rules=FeedbackSettings())
    set_status(conn, Channel.EMAIL, "operator-said@example.com", AddressStatus.DENYLISTED, reason="asked")


def db_now(conn: psycopg.Connection[Any]) -> Any:
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]


def archive(
    exec_conn: psycopg.Connection[Any], control: psycopg.Connection[Any], start: Any, end: Any, **kw: Any
) -> Any:
    return archive_interval(exec_conn, control, instance="paris", instance_id=1, start=start, end=end, **kw)


# --- The CLI ---------------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": "plugins", "MC_LOG_LEVEL": "WARNING", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "messagecenter", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- The installed package and the Dockerfile ------------------------------------------------------


def _installed_as_provider() -> bool:
    try:
        dist = importlib.metadata.distribution("messagecenter")
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(ep.group == "apache_airflow_provider" for ep in dist.entry_points)


needs_install = pytest.mark.skipif(
    not _installed_as_provider(), reason="the package is not installed: pip install -e . (make test does)"
)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def run_batch(conn: psycopg.Connection, settings: ProcessingSettings = SETTINGS) -> execution.Counts:
    """What batchEventsProcessing then updateEventsStatus do, in process."""
    counts = execution.Counts()
    shards = execution.split_queue(conn, "batch", settings)
    for shard in shards:
        counts.claimed += shard.count if shard.batch_id is not None else 0
        counts.add(execution.link_templates(conn, shard))
    for shard in shards:
        counts.add(execution.deliver_shard(conn, shard, settings, transport_for=transport_for))
    counts.add(execution.update_events_status(conn))
    return counts
