"""Feedback: (a) a signed SendGrid webhook batch verified, parsed and applied, next to (c) a naive
per-event loop.

One SendGrid Event Webhook request: a JSON array of 1,000 delivery events (70% delivered, 15% bounce,
5% dropped, 5% deferred, 3% spam report, 2% unsubscribe), each about its own Sent event, found by
the SendGrid message id stored on its delivery log; signed as SendGrid signs (ECDSA P-256 over the
timestamp and the body, a key generated for the run).

(a) what the webhook does with the request: ``sendgrid.verify`` + ``sendgrid.parse``, each event
    turned into a ``Feedback`` item, then ``apply_feedback`` (one transaction: replay check, logs by
    message id, qualification, log changes, quarantine and denylist, texts counted);
(c) a naive loop: the same verify and parse, then one ``UPDATE`` of the log per event, each in its
    own transaction (no replay check, no qualification, no quarantine: less work than (a)).
The HTTP route ``POST /api/v1/feedback/sendgrid`` is not on main yet: (a) is the function path it
will call. Rounds alternate (a) and (c), each on a fresh database; medians printed, (a) against
the 1 s target and next to (c).

    PYTHONPATH=plugins:. .venv/bin/python bench/feedback_webhook_batch.py   # make bench: all of them
    MC_BENCH_DSN=...                  # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_WEBHOOK_EVENTS=...       # events in the request (default 1000)
    MC_BENCH_WEBHOOK_ROUNDS=...       # rounds of (a) and (c) (default 5)
    MC_BENCH_SCALE=...                # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
from collections import Counter
from typing import Any, Literal

import psycopg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.harness import env
from bench.harness.databases import Databases, drop_database
from bench.harness.feedback import FAILED, HEADING, SENT, address, create_sent, log_counts
from bench.harness.report import Report, ratio, run
from messagecenter.core.settings import FeedbackSettings
from messagecenter.feedback.apply import Feedback, FeedbackCounts, Kind, apply_feedback
from messagecenter.feedback.rules import qualifier
from messagecenter.feedback.webhooks import (
    PROVIDERS,
    FeedbackEvent,
    ProviderSecret,
    WebhookRequest,
)

PREFIX = "mc_bench_feedback_webhook_"
EVENTS = env.size("MC_BENCH_WEBHOOK_EVENTS", 1000)
ROUNDS = int(os.environ.get("MC_BENCH_WEBHOOK_ROUNDS", "5"))
URL = "https://mc.example.com/api/v1/feedback/sendgrid"
MESSAGE_ID = "sg-msg-"  # the SendGrid message id stored on each log: sg-msg-<event id>
RULES = FeedbackSettings()
# Out of every 100 events: SendGrid's event name, and how many.
MIX = (
    ("delivered", 70),
    ("bounce", 15),
    ("dropped", 5),
    ("deferred", 5),
    ("spamreport", 3),
    ("unsubscribe", 2),
)
NAIVE_UPDATE = """
UPDATE mc.delivery_log
SET status = CASE WHEN %(kind)s::text = 'failed' THEN 4 ELSE status END,
    delivery = CASE %(kind)s::text WHEN 'failed' THEN 2 WHEN 'delivered' THEN 1 ELSE delivery END,
    feedback_text = coalesce(%(text)s::text, feedback_text),
    feedback_at = %(at)s,
    complained_at = CASE WHEN %(kind)s::text IN ('complaint', 'unsubscribe') THEN %(at)s
                         ELSE complained_at END,
    last_modified = clock_timestamp()
WHERE message_id = %(message_id)s AND status = 2
"""


def event_name(event_id: int) -> str:
    """SendGrid's name of the event about ``event_id`` (the mix, spread: any 100 in a row hold it)."""
    slot = event_id * 37 % 100
    for name, share in MIX:
        if slot < share:
            return name
        slot -= share
    raise AssertionError("the mix adds up to 100")


def sendgrid_event(event_id: int, now: int) -> dict[str, Any]:
    """One event as SendGrid posts it (fields of its documented sample)."""
    name = event_name(event_id)
    event: dict[str, Any] = {
        "email": address(event_id),
        "timestamp": now - 60,
        "event": name,
        "sg_event_id": base64.urlsafe_b64encode(f"{name}-{event_id}-{now}".encode()).decode(),
        "sg_message_id": f"{MESSAGE_ID}{event_id}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-{event_id}.0",
        "smtp-id": f"<{MESSAGE_ID}{event_id}@ismtpd0039p1iad1.sendgrid.net>",
        "category": ["transactional"],
    }
    if name == "delivered":
        event.update(response="250 2.0.0 OK 1600112492 x1si1234567ejx.212 - gsmtp", ip="168.1.1.1")
    elif name == "bounce":
        reason = "550 5.1.1 The email account that you tried to reach does not exist."
        event.update(type="bounce", status="5.1.1", reason=reason, ip="168.1.1.1", tls=1)
    elif name == "dropped":
        event.update(reason="Bounced Address", status="5.0.0")
    elif name == "deferred":
        event.update(response="421 4.7.0 Try again later", attempt="1", ip="168.1.1.1")
    return event


def signed_request(key: ec.EllipticCurvePrivateKey, events: int) -> WebhookRequest:
    """The webhook request of ``events`` events about events 1..``events``, signed as SendGrid signs."""
    now = int(time.time())
    body = json.dumps([sendgrid_event(n, now) for n in range(1, events + 1)]).encode() + b"\r\n"
    timestamp = str(now)
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return WebhookRequest("POST", URL, headers, body)


def public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid's settings page shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def as_feedback(event: FeedbackEvent) -> Feedback:
    """A provider's event as the feedback every source hands to ``apply_feedback``."""
    severity: Literal["permanent", "temporary"] | None = (
        "permanent" if event.severity == "permanent" else "temporary" if event.severity else None
    )
    kind: Kind = event.kind.value  # the same six names
    return Feedback(
        source=event.provider,
        kind=kind,
        event_id=event.event_id,
        message_id=event.provider_message_id,
        text=event.text,
        severity=severity,
        event_key=event.provider_event_id,
        at=event.occurred_at,
    )


def verified_events(request: WebhookRequest, secret: ProviderSecret) -> list[FeedbackEvent]:
    provider = PROVIDERS["sendgrid"]
    provider.verify(request, secret)
    return provider.parse(request)


def bench_ours(dsn: str, request: WebhookRequest, secret: ProviderSecret) -> tuple[float, FeedbackCounts]:
    """Seconds for (a) on an open connection (as the API holds one from its pool), and its counts."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        items = [as_feedback(event) for event in verified_events(request, secret)]
        counts = apply_feedback(conn, items, qualify=qualifier(conn), rules=RULES)
        return time.perf_counter() - start, counts


def bench_naive(dsn: str, request: WebhookRequest, secret: ProviderSecret) -> tuple[float, int]:
    """Seconds for (c), and the logs it changed."""
    changed = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        for event in verified_events(request, secret):
            item = as_feedback(event)
            params = {"kind": item.kind, "text": item.text, "at": item.at, "message_id": item.message_id}
            changed += conn.execute(NAIVE_UPDATE, params).rowcount  # autocommit: its own transaction
        return time.perf_counter() - start, changed


def expected_logs(events: int) -> dict[tuple[int, int | None], int]:
    """(status, delivery) -> logs, once every event of the request is applied."""
    names = Counter(event_name(n) for n in range(1, events + 1))
    expected = {
        (SENT, 1): names["delivered"],
        (FAILED, 2): names["bounce"] + names["dropped"],
        (SENT, None): names["deferred"] + names["spamreport"] + names["unsubscribe"],
    }
    return {k: v for k, v in expected.items() if v}


def measure(report: Report, databases: Databases) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    secret = ProviderSecret(extra={"public_key": public_key(key)})
    request = signed_request(key, EVENTS)
    verified_events(request, secret)  # warm: the key is loaded once per process, as in the API
    expected = expected_logs(EVENTS)
    failing = expected.get((FAILED, 2), 0)
    complaints = sum(event_name(n) in ("spamreport", "unsubscribe") for n in range(1, EVENTS + 1))
    ours: list[float] = []
    naive: list[float] = []
    for round_ in range(ROUNDS):
        with report.section(f"round {round_ + 1}"):
            ours_dsn = create_sent(databases, f"ours_{round_}", EVENTS, message_id_prefix=MESSAGE_ID)
            naive_dsn = create_sent(databases, f"naive_{round_}", EVENTS, message_id_prefix=MESSAGE_ID)
            for path in ("ours", "naive") if round_ % 2 == 0 else ("naive", "ours"):
                if path == "ours":
                    seconds, counts = bench_ours(ours_dsn, request, secret)
                    assert (counts.received, counts.applied, counts.unmatched) == (EVENTS, EVENTS, 0), counts
                    assert (counts.failed, counts.denylisted) == (failing, complaints), counts
                    assert log_counts(ours_dsn) == expected, log_counts(ours_dsn)
                    ours.append(seconds)
                else:
                    seconds, changed = bench_naive(naive_dsn, request, secret)
                    assert changed == EVENTS, changed
                    assert log_counts(naive_dsn) == expected, log_counts(naive_dsn)
                    naive.append(seconds)
            for name in ("ours", "naive"):
                drop_database(f"{PREFIX}{name}_{round_}")
    a, c = statistics.median(ours), statistics.median(naive)
    out = report.add
    out(HEADING)
    out(
        f"SendGrid webhook: one signed request of {EVENTS} events ({len(request.body) / 1024:.0f} kB;"
        f" {', '.join(f'{s}% {n}' for n, s in MIX)}), matched by message id to {EVENTS} Sent logs;"
        f" median of {ROUNDS} rounds, each on fresh databases"
    )
    out(
        f"(a) verify + parse + apply_feedback (one transaction)   {a:6.3f} s  {EVENTS / a:8.0f} events/s"
        f"   (rounds {min(ours):.3f}-{max(ours):.3f} s; {failing} Failed, quarantine and denylist updated)"
    )
    out(
        "      the HTTP route POST /api/v1/feedback/sendgrid is not on main yet: this is the function"
        " path it calls"
    )
    out(
        f"(c) verify + parse + one UPDATE per event, each committed   {c:6.3f} s  {EVENTS / c:8.0f} events/s"
        f"   (rounds {min(naive):.3f}-{max(naive):.3f} s)"
    )
    out(f"      {ratio(f'(a) seconds per {EVENTS}-event batch', a, '<= 1 s', digits=3, unit=' s')}")
    out(f"      {ratio('(c)/(a) seconds', c / a, 'side by side, no target')}")


if __name__ == "__main__":
    run(measure, PREFIX)
