"""bounceProcessing end to end, against a real Postfix and Dovecot.

A mail sent by the batch workflow through Postfix to an unknown user comes back as a real RFC 3464
report into the bounce mailbox (Postfix's bounce daemon writes to the signed VERP envelope sender);
the bounce workflow turns the event from Sent into Delivery failed and quarantines the address, and
the next event to that address is Ignored. Complaints denylist; forged and hostile mail changes
nothing and nothing in the mailbox is lost.
"""

from __future__ import annotations

import email
import imaplib
import json
import time
from collections.abc import Iterator
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import psycopg
import pytest

from messagecenter import execution
from messagecenter.airflow.operators import ProcessBouncesOperator, UpdateQuarantineOperator
from messagecenter.airflow.transports import transport_for
from messagecenter.core.settings import ProcessingSettings, get_settings
from messagecenter.core.types import Channel
from messagecenter.feedback import verp
from messagecenter.feedback.quarantine import AddressStatus, get_state
from messagecenter.intake import store
from messagecenter.intake.decode import event_from_dict
from messagecenter.templates.files import parse_templates
from messagecenter.templates.publishing import publish_templates
from tests.support.builders import airflow_uri
from tests.support.mailserver import MailServer, mail_server_fixture

SECRET = "bounce-test-secret-" + "x" * 24
SETTINGS = ProcessingSettings(retry_backoff_seconds=0, max_tries=3, deliver_chunk=50, min_shard_size=10)
FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = {"templates": [{"event_type": "RESET", "channel": "email", "subject": "Reset", "text": "Hi"}]}

mail_server = mail_server_fixture()


@pytest.fixture
def server(mail_server: MailServer) -> MailServer:
    mail_server.clear()
    return mail_server


@pytest.fixture
def wired(db_dsn: str, server: MailServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailServer]:
    """The execution database, Postfix as mc_smtp (VERP on the bounce domain), Dovecot as the mailbox."""
    smtp = {
        "conn_type": "smtp",
        "host": server.host,
        "port": server.smtp_port,
        "extra": {
            "from_email": "shop@shop.test",
            "disable_ssl": True,
            "disable_tls": True,
            "timeout": 10,
            "retry_limit": 0,
            "return_path_domain": server.bounce_domain,
        },
    }
    mailbox = {
        "conn_type": "imap",
        "host": server.host,
        "port": server.imap_port,
        "login": server.login,
        "password": server.password,
        "schema": "INBOX",
        "extra": {"timeout": 10},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", json.dumps(smtp))
    monkeypatch.setenv("AIRFLOW_CONN_MC_BOUNCE_MAILBOX", json.dumps(mailbox))
    monkeypatch.setenv("AIRFLOW_CONN_MC_EXECUTION", airflow_uri(db_dsn))
    monkeypatch.setenv("MC_FEEDBACK_SECRET", SECRET)
    monkeypatch.setenv("MC_BOUNCE_BATCH", "50")
    get_settings.cache_clear()
    yield server
    get_settings.cache_clear()


def send(conn: psycopg.Connection[Any], *emails: str) -> list[int]:
    """Push one batch event per address and run batchEventsProcessing and updateEventsStatus."""
    publish_templates(conn, parse_templates(TEMPLATE))
    events = [event_from_dict({"type": "RESET", "email": address}) for address in emails]
    ids = store.insert_events(conn, "batch", events, instance_id=1).ids
    for shard in execution.split_queue(conn, "batch", SETTINGS):
        execution.link_templates(conn, shard)
        execution.deliver_shard(conn, shard, SETTINGS, transport_for=transport_for)
    execution.update_events_status(conn)
    return ids


def process_bounces(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What the bounceProcessing task does, then updateEventsStatus's copy and quarantine upkeep."""
    counts = ProcessBouncesOperator(task_id="process_bounces").run({})  # type: ignore[arg-type]
    execution.update_events_status(conn)
    UpdateQuarantineOperator(task_id="update_quarantine").run({})  # type: ignore[arg-type]
    return counts


def status(conn: psycopg.Connection[Any], event_id: int) -> tuple[int, str | None]:
    row = conn.execute(
        "SELECT e.status, l.error FROM mc.batch_event e JOIN mc.delivery_log l ON l.event_id = e.id "
        "WHERE e.id = %s",
        (event_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def folder_sizes(server: MailServer) -> dict[str, int]:
    return {f: len(server.messages(f)) for f in ("INBOX", "MC-Processed", "MC-Unmatched")}


def append(server: MailServer, raw: bytes) -> None:
    """Put a mail straight into the bounce mailbox (what a hostile sender could make arrive)."""
    with server.imap() as client:
        client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)


def test_a_real_dsn_turns_sent_into_failed_quarantines_and_the_next_event_is_ignored(conn, wired) -> None:
    (gone,) = send(conn, "no-such-user@mail.test")
    assert status(conn, gone) == (2, None)  # Postfix accepted it: Sent
    (dsn,) = wired.wait_for_messages(1, timeout=30)
    assert b"report-type=delivery-status" in dsn
    counts = process_bounces(conn)
    assert (counts["handled"], counts["feedback_failed"], counts["feedback_quarantined"]) == (1, 1, 1)
    assert status(conn, gone)[0] == 4  # Delivery failed
    row = conn.execute(
        "SELECT delivery, failure_type, failure_reason, feedback_text FROM mc.delivery_log "
        "WHERE event_id = %s",
        (gone,),
    ).fetchone()
    assert row[:3] == (2, 2, 1)  # failed after the send, hard, user unknown
    assert "5.1.1" in row[3]
    state = get_state(conn, Channel.EMAIL, "no-such-user@mail.test")
    assert (state.status, state.failure_reason) == (AddressStatus.QUARANTINE, "User unknown")
    assert folder_sizes(wired) == {"INBOX": 0, "MC-Processed": 1, "MC-Unmatched": 0}
    # The next event to that address is not sent: Ignored, "address in quarantine".
    (again,) = send(conn, "no-such-user@mail.test")
    assert status(conn, again) == (3, "address in quarantine")
    # Reading the mailbox again changes nothing (nothing left, and a replay would be idempotent).
    assert process_bounces(conn)["read"] == 0


def test_an_arf_complaint_denylists(conn, wired) -> None:
    (event_id,) = send(conn, "nobody@mail.test")
    return_path = verp.return_path(event_id, wired.bounce_domain, SECRET.encode())
    wired.send(complaint(event_id, "nobody@mail.test"), sender="fbl@isp.test", recipients=[return_path])
    wired.wait_for_messages(1, timeout=30)
    counts = process_bounces(conn)
    assert counts["feedback_denylisted"] == 1
    assert get_state(conn, Channel.EMAIL, "nobody@mail.test").status == AddressStatus.DENYLISTED
    assert status(conn, event_id)[0] == 2  # the complained-about message was delivered: still Sent


def complaint(event_id: int, recipient: str) -> bytes:
    """An RFC 5965 abuse report about one of our mails, as a mailbox provider's feedback loop sends it."""
    report = MIMEMultipart("report")
    report.set_param("report-type", "feedback-report")
    report["From"] = "fbl@isp.test"
    report["To"] = "abuse@shop.test"
    report["Subject"] = "Abuse report"
    report.attach(MIMEText("This is an email abuse report for a message received from IP 192.0.2.1."))
    fields = MIMEBase("message", "feedback-report")
    fields.set_payload(
        "Feedback-Type: abuse\nUser-Agent: ISP-FBL/1.0\nVersion: 1\n"
        f"Original-Rcpt-To: <{recipient}>\nArrival-Date: Thu, 8 Mar 2026 14:00:00 +0000\n"
    )
    report.attach(fields)
    original = email.message_from_string(
        f"Message-ID: {verp.message_id(event_id, 'shop.test')}\nFrom: shop@shop.test\nTo: {recipient}\n"
        f"X-MC-Event-Id: {event_id}\nSubject: Reset\n\nHi\n"
    )
    report.attach(MIMEMessage(original))
    return report.as_bytes()


def dsn_for(event_id: int, recipient: str, *, return_path: str, recipients: int = 1) -> bytes:
    """A Postfix report (the real one of the fixtures) about ``event_id``, to ``return_path``."""
    raw = (FIXTURES / "postfix_dsn_real.eml").read_bytes().decode()
    raw = raw.replace("bounce+123-abc@bounces.test", return_path)
    raw = raw.replace("unknown-user@mail.test", recipient).replace('"unknown-user"', '"x"')
    raw = raw.replace("mc123@shop.test", f"mc{event_id}@shop.test").replace(
        "X-MC-Event-Id: 123", "X-MC-Event-Id: 0"
    )
    if recipients > 1:
        block = "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        extra = "".join(block.format(f"r{n}@mail.test") for n in range(recipients - 1))
        marker = "\r\n\r\n--"
        head, sep, tail = raw.partition("Content-Type: message/delivery-status")
        body_end = tail.index(marker, tail.index("Final-Recipient"))
        tail = tail[:body_end] + "\r\n" + extra + tail[body_end:]
        raw = head + sep + tail
    return raw.encode()


def test_a_forged_return_path_quarantines_nobody(conn, wired) -> None:
    (event_id,) = send(conn, "nobody@mail.test")
    real = verp.return_path(event_id, wired.bounce_domain, SECRET.encode())
    forged = real[: real.index("-") + 1] + "aaaaaaaaaaaa@" + wired.bounce_domain
    append(wired, dsn_for(event_id, "nobody@mail.test", return_path=forged))
    counts = process_bounces(conn)
    assert (counts["handled"], counts["set_aside"], counts["unmatched"]) == (0, 1, 1)
    assert get_state(conn, Channel.EMAIL, "nobody@mail.test").status == AddressStatus.VALID
    assert status(conn, event_id)[0] == 2
    assert folder_sizes(wired) == {"INBOX": 0, "MC-Processed": 0, "MC-Unmatched": 1}


def test_hostile_mail_is_set_aside_and_nothing_else_is_lost(conn, wired) -> None:
    good, wide = send(conn, "nobody@mail.test", "nobody@mail.test")
    key = SECRET.encode()
    hostile = [
        b"\x00\xff garbage \x80" * 1000,  # not a mail at all
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
        + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 5000,
        b"Subject: huge\r\nContent-Type: text/plain\r\n\r\n" + b"x" * (50 * 1024 * 1024),  # 50 MB
        dsn_for(
            wide,
            "nobody@mail.test",
            return_path=verp.return_path(wide, wired.bounce_domain, key),
            recipients=10_000,
        ),
        dsn_for(good, "nobody@mail.test", return_path=verp.return_path(good, wired.bounce_domain, key)),
    ]
    for raw in hostile:
        append(wired, raw)
    counts = process_bounces(conn)
    assert counts["read"] == len(hostile)
    sizes = folder_sizes(wired)
    assert sizes["INBOX"] == 0
    assert sizes["MC-Processed"] + sizes["MC-Unmatched"] == len(hostile)  # nothing lost
    assert sizes["MC-Processed"] == 2  # the two reports about our events
    assert status(conn, good)[0] == 4
    assert status(conn, wide)[0] == 4  # 10,000 recipients read as the first 1,000: still applied once
    assert get_state(conn, Channel.EMAIL, "nobody@mail.test").status == AddressStatus.QUARANTINE
