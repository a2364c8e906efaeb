"""The demo's bounce mailbox: the mail sink bounces ``dsnbounce-*`` with a DSN into a directory that
the demo's POP3 server serves, and the real bounce reader turns the event Delivery failed.

In process: the sink and the POP3 server of the demo, the delivery workflow, ``process_mailbox`` over
POP3 (what ``bounceProcessing`` runs), against a real PostgreSQL.
"""

from __future__ import annotations

import json
import poplib
import smtplib
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from devstack import demo
from devstack.pop3 import Pop3Server
from devstack.simulators import Simulators
from devstack.sinks import MailSink

from messagecenter import execution
from messagecenter.core.settings import get_settings
from messagecenter.core.types import Channel
from messagecenter.feedback import verp
from messagecenter.feedback.inbox import process_mailbox
from messagecenter.feedback.mailbox import MailboxSettings, open_mailbox
from messagecenter.feedback.quarantine import AddressStatus, get_state
from tests.support.builders import publish, push, run_batch

SECRET = "demo-secret-" + "x" * 32
PASSWORD = "pop-password"


@pytest.fixture
def sinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MailSink, Pop3Server]]:
    """The demo's mail sink (its DSNs going to ``bounces``) as ``mc_smtp``, signing with a secret,
    and the POP3 server of ``bounces``."""
    monkeypatch.setenv("MC_FEEDBACK_SECRET", SECRET)
    get_settings.cache_clear()
    bounces = tmp_path / "bounces"
    with MailSink(tmp_path / "mail", bounces=bounces) as mail, Pop3Server(bounces, PASSWORD) as pop:
        smtp = mail.connection()
        smtp["extra"] = {**smtp["extra"], "return_path_domain": demo.BOUNCE_DOMAIN}
        monkeypatch.setenv("AIRFLOW_CONN_MC_SMTP", json.dumps(smtp))
        yield mail, pop
    get_settings.cache_clear()


def mailbox_settings(pop: Pop3Server, **changes: Any) -> MailboxSettings:
    conn = pop.connection()
    options = {"login": conn["login"], "password": conn["password"], **changes}
    return MailboxSettings(protocol="pop3", host=conn["host"], port=conn["port"], timeout=10, **options)


def bounce_files(pop: Pop3Server) -> list[Path]:
    return sorted(pop.directory.glob("*.eml"))


def test_a_dsnbounce_recipient_ends_delivery_failed_through_the_bounce_mailbox(
    conn: psycopg.Connection[Any], sinks: tuple[MailSink, Pop3Server]
) -> None:
    mail, pop = sinks
    publish(conn)
    kept, gone = push(
        conn,
        "batch",
        {
            "type": "ORDER_CONFIRMATION",
            "email": "ann@example.com",
            "ctx": {"firstName": "Ann", "orderId": "1"},
        },
        {
            "type": "ORDER_CONFIRMATION",
            "email": "dsnbounce-x@example.com",
            "ctx": {"firstName": "X", "orderId": "2"},
        },
    )
    run_batch(conn)
    assert event_status(conn, gone) == 2  # the sink accepted it, as a relay would: Sent
    assert [p.name for p in (mail.directory).glob("*.eml")] == ["1.eml"]  # only ann's is delivered

    (dsn_file,) = bounce_files(pop)
    dsn = message_from_bytes(dsn_file.read_bytes(), policy=policy.default)
    key = SECRET.encode()
    assert verp.event_id_from(str(dsn["To"]), key) == gone  # to the signed return path
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    text, status, headers = dsn.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    assert headers.get_content_type() == "text/rfc822-headers"
    fields = dsn_file.read_text().split("Content-Type: message/delivery-status")[1]
    assert "Final-Recipient: rfc822; dsnbounce-x@example.com" in fields
    assert "Action: failed" in fields
    assert "Status: 5.1.1" in fields
    assert "Diagnostic-Code: smtp; 550 5.1.1 <dsnbounce-x@example.com>: Recipient address rejected" in fields
    assert f"X-MC-Event-Id: {gone}" in headers.get_payload()

    with open_mailbox(mailbox_settings(pop)) as mailbox:
        counts = process_mailbox(mailbox, conn, get_settings().feedback)
    execution.update_events_status(conn)
    assert (counts.read, counts.handled, counts.feedback.failed, counts.feedback.quarantined) == (1, 1, 1, 1)
    assert event_status(conn, gone) == 4  # Delivery failed
    assert event_status(conn, kept) == 2
    state = get_state(conn, Channel.EMAIL, "dsnbounce-x@example.com")
    assert (state.status, state.failure_reason) == (AddressStatus.QUARANTINE, "User unknown")
    assert bounce_files(pop) == []  # DELE'd and committed by QUIT
    with open_mailbox(mailbox_settings(pop)) as mailbox:
        assert process_mailbox(mailbox, conn, get_settings().feedback).read == 0


def event_status(conn: psycopg.Connection[Any], event_id: int) -> int:
    row = conn.execute("SELECT status FROM mc.batch_event WHERE id = %s", (event_id,)).fetchone()
    assert row is not None
    return int(row[0])


def _mail(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.com", to, "Order"
    msg["X-MC-Event-Id"] = "7"
    msg.set_content("body\n.starts with a dot\n")
    return msg


def test_a_null_sender_gets_no_dsn_and_other_recipients_are_delivered(tmp_path: Path) -> None:
    bounces = tmp_path / "bounces"
    with MailSink(tmp_path / "mail", bounces=bounces) as sink, smtplib.SMTP("127.0.0.1", sink.port) as client:
        client.send_message(_mail("dsnbounce-a@example.com"), from_addr="")  # a bounce never bounces
        client.send_message(
            _mail("dsnbounce-b@example.com, cy@example.com"), from_addr="bounce+7-abc@bounces.example.com"
        )
    (dsn,) = bounces.glob("*.eml")
    assert "Final-Recipient: rfc822; dsnbounce-b@example.com" in dsn.read_text()
    assert (
        "cy@example.com"
        not in dsn.read_text()
        .split("Content-Type: message/delivery-status")[1]
        .split("text/rfc822-headers")[0]
    )
    assert [p.name for p in (tmp_path / "mail").glob("*.eml")] == ["1.eml"]  # cy's copy


def test_pop3_server_speaks_what_poplib_uses_and_deletes_only_at_quit(tmp_path: Path) -> None:
    maildrop = tmp_path / "bounces"
    maildrop.mkdir()
    (maildrop / "1.eml").write_bytes(b"Subject: one\n\nfirst\n.dot line\n")
    (maildrop / "2.eml").write_bytes(b"Subject: two\r\n\r\nsecond\r\n")
    (maildrop / "3.eml.part").write_bytes(b"Subject: half written\r\n")
    with Pop3Server(maildrop, PASSWORD) as server:
        wrong = poplib.POP3("127.0.0.1", server.port, timeout=5)
        wrong.user("bounces")
        with pytest.raises(poplib.error_proto, match="AUTH"):
            wrong.pass_("wrong")
        wrong.close()
        pop = poplib.POP3("127.0.0.1", server.port, timeout=5)
        assert {"USER", "UIDL"} <= set(pop.capa())
        pop.user("bounces")
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 2
        assert pop.retr(1)[1] == [b"Subject: one", b"", b"first", b".dot line"]  # dot-unstuffed
        uidls = pop.uidl()[1]
        assert [line.split()[0] for line in uidls] == [b"1", b"2"]
        server.lock_timeout = 0.2
        other = poplib.POP3("127.0.0.1", server.port, timeout=5)
        other.user("bounces")
        with pytest.raises(poplib.error_proto, match="IN-USE"):  # one session holds the maildrop
            other.pass_(PASSWORD)
        other.close()
        server.lock_timeout = 5.0  # the next login waits for this session's end
        pop.dele(1)
        pop.rset()
        pop.dele(2)
        assert pop.list()[1] == [b"1 " + str(len(b"Subject: one\r\n\r\nfirst\r\n.dot line\r\n")).encode()]
        pop.close()  # without QUIT: nothing is deleted
        assert sorted(p.name for p in maildrop.glob("*.eml")) == ["1.eml", "2.eml"]
        pop = poplib.POP3("127.0.0.1", server.port, timeout=5)
        pop.user("bounces")
        pop.pass_(PASSWORD)
        assert pop.uidl()[1] == uidls  # stable across sessions
        pop.dele(2)
        pop.quit()
        assert sorted(p.name for p in maildrop.glob("*.eml")) == ["1.eml"]


def test_demo_registers_the_bounce_mailbox_for_every_component(tmp_path: Path) -> None:
    dbs = demo.Databases(mc_dsn="host=/tmp/pg dbname=mc", airflow_dsn="host=/tmp/pg dbname=af")
    with (
        MailSink(tmp_path / "mail", bounces=tmp_path / "bounces") as mail,
        Simulators(tmp_path) as provider,
        Pop3Server(tmp_path / "bounces", PASSWORD) as pop,
    ):
        env = demo.connections_env(dbs, mail, provider, pop)
    mailbox = json.loads(env["AIRFLOW_CONN_MC_BOUNCE_MAILBOX"])
    assert (mailbox["conn_type"], mailbox["port"], mailbox["login"]) == ("pop3", pop.port, "bounces")
    assert mailbox["password"] == PASSWORD
