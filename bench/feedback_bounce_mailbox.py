"""Feedback: (a) the bounce workflow over a real IMAP mailbox, next to (b) a bare imaplib loop.

A private Postfix + Dovecot (``tests/support/mailserver.py``: as root, with postfix, dovecot-imapd and
dovecot-pop3d installed) serves the bounce mailbox. Its INBOX is filled with one RFC 3464 report per
Sent event (the real Postfix report of ``tests/feedback/fixtures``, rewritten per event: its
recipient, Message-ID and signed VERP return path), appended over one IMAP connection (MULTIAPPEND
with non-synchronising literals, in chunks).

(a) ``process_mailbox`` over ``open_mailbox(...)``, batches of ``bounce_batch``: fetch (sizes and
    bodies in one ``UID FETCH``), parse, match the VERP path, qualify, apply (one transaction per
    batch), move the batch to ``MC-Processed``; checked: every mail moved and every log Failed;
(b) the floor: one imaplib connection, ``UID SEARCH``, then ``UID FETCH BODY.PEEK[]`` in batches of
    the same size, each mail parsed with ``email.message_from_bytes``; no database, nothing moved.
The mailbox is emptied and filled again between the two, so both read the same mails from a fresh
folder. Printed as the ratio (a)/(b) of mails per second, with the target in brackets.

    PYTHONPATH=plugins:. .venv/bin/python bench/feedback_bounce_mailbox.py   # make bench: all of them
    MC_BENCH_DSN=...           # admin DSN of the server (default: see bench/harness/databases.py)
    MC_BENCH_BOUNCES=...       # reports in the mailbox, and Sent events (default 10000)
    MC_BOUNCE_BATCH=...        # mails per batch of (a) and (b) (default: the setting's, 200)
    MC_BENCH_SCALE=...         # every default size times this (0.01: a smoke run)
"""

from __future__ import annotations

import email
import imaplib
import os
import time
from collections.abc import Sequence

import psycopg
from tests.support.mailserver import MailServer

from bench.harness import env
from bench.harness.databases import Databases
from bench.harness.feedback import FAILED, HEADING, SECRET, address, create_sent, log_counts
from bench.harness.report import Report, ratio, run
from messagecenter.core.settings import FeedbackSettings
from messagecenter.feedback import verp
from messagecenter.feedback.inbox import process_mailbox
from messagecenter.feedback.mailbox import PROCESSED_FOLDER, MailboxSettings, open_mailbox

PREFIX = "mc_bench_feedback_mailbox_"
BOUNCES = env.size("MC_BENCH_BOUNCES", 10_000)
BATCH = int(os.environ.get("MC_BOUNCE_BATCH") or FeedbackSettings.bounce_batch)
SETTINGS = FeedbackSettings(secret=SECRET, bounce_batch=BATCH)
FIXTURE = env.REPO / "tests" / "feedback" / "fixtures" / "postfix_dsn_real.eml"
APPEND_CHUNK = 500  # mails per APPEND command while filling


def reports(server: MailServer, total: int) -> list[bytes]:
    """One Postfix report per event 1..``total``, to its signed return path, about its address."""
    template = FIXTURE.read_bytes().decode()
    key = SECRET.encode()
    mails = []
    for event_id in range(1, total + 1):
        recipient = address(event_id)
        raw = (
            template.replace(
                "bounce+123-abc@bounces.test", verp.return_path(event_id, server.bounce_domain, key)
            )
            .replace("unknown-user@mail.test", recipient)
            .replace('"unknown-user"', f'"{recipient.split("@")[0]}"')
            .replace("mc123@shop.test", f"mc{event_id}@shop.test")
            .replace("X-MC-Event-Id: 123", f"X-MC-Event-Id: {event_id}")
            .replace("Your order 123", f"Your order {event_id}")
        )
        mails.append(raw.encode())
    return mails


def fill(server: MailServer, mails: Sequence[bytes]) -> float:
    """Empty the mailbox, then append ``mails`` to INBOX; seconds."""
    server.clear()
    start = time.perf_counter()
    with server.imap() as client:
        _, caps = client.capability()
        fast = {b"MULTIAPPEND", b"LITERAL+"} <= set(caps[0].upper().split())
        for low in range(0, len(mails), APPEND_CHUNK):
            chunk = mails[low : low + APPEND_CHUNK]
            if not fast:
                for raw in chunk:
                    client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
                continue
            # One APPEND per chunk (RFC 3502), each literal non-synchronising (RFC 7888): no round
            # trip per mail. imaplib has neither, so the command is written on its connection.
            tag = b"MCFILL%d" % low
            client.send(
                tag + b" APPEND INBOX" + b"".join(b" {%d+}\r\n%s" % (len(m), m) for m in chunk) + b"\r\n"
            )
            while not (line := client.readline()).startswith(tag):
                if not line:
                    raise RuntimeError("the IMAP server closed the connection while appending")
            assert line.split()[1] == b"OK", line
    assert folder_size(server, "INBOX") == len(mails)
    return time.perf_counter() - start


def folder_size(server: MailServer, folder: str) -> int:
    with server.imap() as client:
        status, data = client.status(f'"{folder}"', "(MESSAGES)")
        if status != "OK":
            return 0
        return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))


def bench_floor(server: MailServer, batch: int) -> tuple[float, int]:
    """Seconds for the bare loop over INBOX, and the delivery status reports it parsed."""
    parsed = 0
    start = time.perf_counter()
    client = imaplib.IMAP4(server.host, server.imap_port, timeout=60)
    try:
        client.login(server.login, server.password)
        client.select("INBOX")
        _, data = client.uid("SEARCH", "ALL")
        uids = data[0].split() if data and data[0] else []
        for low in range(0, len(uids), batch):
            _, fetched = client.uid("FETCH", b",".join(uids[low : low + batch]).decode(), "(BODY.PEEK[])")
            for item in fetched:
                if isinstance(item, tuple):
                    message = email.message_from_bytes(item[1])
                    parsed += message.get_content_type() == "multipart/report"
    finally:
        client.logout()
    return time.perf_counter() - start, parsed


def bench_ours(server: MailServer, dsn: str) -> tuple[float, dict[str, int]]:
    """Seconds for ``process_mailbox`` to empty INBOX (connecting included), and its counts."""
    mailbox_settings = MailboxSettings(
        "imap", server.host, server.login, server.password, port=server.imap_port, timeout=60
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        with open_mailbox(mailbox_settings) as mailbox:
            counts = process_mailbox(mailbox, conn, SETTINGS)
        elapsed = time.perf_counter() - start
    summary = counts.as_dict()
    summary.pop("by_kind")
    return elapsed, summary


def measure(report: Report, databases: Databases) -> None:
    batch = SETTINGS.bounce_batch
    with MailServer() as server:
        with report.section("setup"):
            dsn = create_sent(databases, "ours", BOUNCES)
            mails = reports(server, BOUNCES)
        with report.section("(b) floor"):
            fill_seconds = fill(server, mails)
            floor_seconds, parsed = bench_floor(server, batch)
            assert parsed == BOUNCES, f"the floor parsed {parsed} reports of {BOUNCES}"
        with report.section("(a) ours"):
            fill(server, mails)
            ours_seconds, counts = bench_ours(server, dsn)
            assert (counts["read"], counts["handled"], counts["set_aside"]) == (BOUNCES, BOUNCES, 0), counts
            assert counts["feedback_failed"] == BOUNCES, counts
            assert folder_size(server, PROCESSED_FOLDER) == BOUNCES
            assert folder_size(server, "INBOX") == 0
            assert log_counts(dsn) == {(FAILED, 2): BOUNCES}, log_counts(dsn)
    ours, floor = BOUNCES / ours_seconds, BOUNCES / floor_seconds
    size = sum(map(len, mails)) / len(mails)
    out = report.add
    out(HEADING)
    out(
        f"bounce mailbox: {BOUNCES} Postfix delivery status reports ({size / 1024:.1f} kB each) in a"
        f" private Dovecot's INBOX over IMAP, {batch} mails per batch; each fill took {fill_seconds:.1f} s"
    )
    out(
        f"(a) process_mailbox: fetch, parse, VERP match, qualify, apply, move to {PROCESSED_FOLDER}"
        f"   {ours_seconds:6.2f} s {ours:8.0f} mails/s"
    )
    out(
        f"      {counts['handled']} moved, {counts['feedback_failed']} logs Sent -> Failed,"
        f" {counts['feedback_quarantined']} addresses quarantined"
    )
    floor_path = "imaplib UID FETCH BODY.PEEK[] + email.message_from_bytes"
    out(f"(b) {floor_path}   {floor_seconds:6.2f} s {floor:8.0f} mails/s")
    out(f"      {ratio('(a)/(b)', ours / floor, '>= 0.3')}")


if __name__ == "__main__":
    run(measure, PREFIX)
