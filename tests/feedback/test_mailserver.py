"""The bounce mailbox against a real Postfix and Dovecot: a real DSN, read over IMAP and POP3.

Postfix accepts mail for an unknown user of ``mail.test``, its ``local`` agent refuses it and its
bounce daemon sends an RFC 3464 report to the VERP envelope sender, which lands in the bounce
mailbox that Dovecot serves. ``feedback.mailbox`` must read it in bounded batches, move or delete
only what the caller says was handled, and never download a message over the size limit.
"""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
import time
from email.message import EmailMessage, Message
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from messagecenter.feedback.mailbox import (
    ImapMailbox,
    InboundMessage,
    MailboxError,
    MailboxSettings,
    Pop3Mailbox,
    open_mailbox,
)
from tests.support import mailserver
from tests.support.builders import REPO
from tests.support.mailserver import MailServer, MailServerError, descendants, mail_server_fixture

FIXTURE = Path(__file__).parent / "fixtures" / "postfix_dsn_real.eml"
UNKNOWN = "unknown-user@mail.test"

mail_server = mail_server_fixture()


@pytest.fixture
def server(mail_server: MailServer) -> MailServer:
    """The module's server with an empty bounce mailbox."""
    mail_server.clear()
    return mail_server


def _settings(server: MailServer, protocol: str, **overrides: Any) -> MailboxSettings:
    port = server.imap_port if protocol == "imap" else server.pop3_port
    values: dict[str, Any] = {
        "protocol": protocol,
        "host": server.host,
        "port": port,
        "login": server.login,
        "password": server.password,
        "timeout": 10.0,
    }
    return MailboxSettings(**(values | overrides))


def _original(event_id: int, *, body: str = "Your order has shipped.\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Shop <news@shop.test>"
    message["To"] = UNKNOWN
    message["Subject"] = f"Your order {event_id}"
    message["Message-ID"] = make_msgid(idstring=f"mc{event_id}", domain="shop.test")
    message["X-MC-Event-Id"] = str(event_id)
    message.set_content(body)
    return message


def _bounce(server: MailServer, event_id: int, recipient: str = UNKNOWN) -> EmailMessage:
    """Send one e-mail that Postfix will bounce to ``bounce+<event id>-abc@<bounce domain>``."""
    message = _original(event_id)
    server.send(message, sender=server.bounce_address(f"{event_id}-abc"), recipients=[recipient])
    return message


def _parse(raw: bytes | None) -> Message:
    assert raw is not None
    return email.message_from_bytes(raw, policy=email.policy.default)


def _status_fields(report: Message) -> list[Message]:
    """The delivery-status part's field groups: the per-message one, then one per recipient."""
    (status,) = [part for part in report.walk() if part.get_content_type() == "message/delivery-status"]
    payload = status.get_payload()
    assert isinstance(payload, list)
    return payload


def _returned(report: Message) -> Message:
    (part,) = [part for part in report.walk() if part.get_content_type() == "message/rfc822"]
    payload = part.get_payload()
    assert isinstance(payload, list)
    return payload[0]


def _assert_dsn_for(raw: bytes | None, original: EmailMessage, server: MailServer, tag: str) -> None:
    report = _parse(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["To"] == server.bounce_address(tag)
    per_message, *recipients = _status_fields(report)
    assert per_message["Reporting-MTA"] == f"dns; mx.{server.local_domain}"
    (recipient,) = recipients
    assert recipient["Action"] == "failed"
    assert re.fullmatch(r"5\.\d{1,3}\.\d{1,3}", recipient["Status"]), recipient["Status"]
    assert recipient["Final-Recipient"].lower() == f"rfc822; {UNKNOWN}"
    assert "unknown user" in recipient["Diagnostic-Code"]
    returned = _returned(report)
    for header in ("Message-ID", "Subject", "X-MC-Event-Id", "From"):
        assert returned[header] == original[header], header


def _tags(raws: list[bytes]) -> list[str]:
    """The VERP tag each bounce was sent to (``bounce+<tag>@...``), in mailbox order."""
    tags = []
    for raw in raws:
        match = re.match(r"bounce\+([^@]+)@", str(_parse(raw)["To"]))
        assert match, raw[:300]
        tags.append(match[1])
    return tags


def _unseen(server: MailServer) -> int:
    with server.imap() as client:
        client.select("INBOX", readonly=True)
        _, data = client.uid("SEARCH", "UNSEEN")
        return len(data[0].split())


def _ended_sessions(server: MailServer, protocol: str, at_least: int = 0) -> list[str]:
    """Dovecot's log line for the end of each ``protocol`` session, once every session has one.

    Dovecot logs a session's end just after the client leaves: for a moment, a session that already
    ended may be missing from the log.
    """
    deadline = time.monotonic() + 5
    while True:
        log = (server.root / "log" / "dovecot.log").read_text()
        logins = len(re.findall(rf"{protocol}-login: Info: Login: user=<{server.login}>", log))
        ended = re.findall(rf"{protocol}\({server.login}\).*Info: Disconnected: .*", log)
        if len(ended) == logins and len(ended) >= at_least:
            return ended
        assert time.monotonic() < deadline, f"{len(ended)} of {logins} sessions ended\n{server.logs()}"
        time.sleep(0.05)


# -- the real DSN -----------------------------------------------------------------------------------


def test_postfix_bounces_an_unknown_user_with_an_rfc3464_report_read_over_imap(server: MailServer) -> None:
    original = _bounce(server, 123)
    server.wait_for_messages(1)

    with ImapMailbox(_settings(server, "imap")) as mailbox:
        (message,) = mailbox.fetch(10)
        assert mailbox.fetch(10) == []  # a batch is handed out once per session

    assert not message.too_large
    assert message.size == len(message.raw or b"")
    _assert_dsn_for(message.raw, original, server, "123-abc")
    # Reading changed nothing: the message is still in the inbox, not even marked seen.
    assert len(server.messages()) == 1
    assert _unseen(server) == 1


def test_the_same_report_is_read_over_pop3(server: MailServer) -> None:
    original = _bounce(server, 456)
    (over_imap,) = server.wait_for_messages(1)

    with Pop3Mailbox(_settings(server, "pop3")) as mailbox:
        (message,) = mailbox.fetch(10)
        assert mailbox.fetch(10) == []

    _assert_dsn_for(message.raw, original, server, "456-abc")
    assert message.raw == over_imap
    assert message.size == len(over_imap)
    assert len(server.messages()) == 1  # fetched, not deleted


def test_the_saved_fixture_is_a_postfix_report_of_the_same_shape(server: MailServer) -> None:
    """tests/feedback/fixtures/postfix_dsn_real.eml came from this server: it must still look alike."""
    _bounce(server, 789)
    (live,) = server.wait_for_messages(1)
    saved = _parse(FIXTURE.read_bytes())

    def shape(report: Message) -> list[str]:
        return [part.get_content_type() for part in report.walk()]

    assert shape(saved) == shape(_parse(live))
    _, recipient = _status_fields(saved)
    assert (recipient["Action"], recipient["Status"]) == ("failed", "5.1.1")
    assert recipient["Final-Recipient"] == f"rfc822; {UNKNOWN}"
    assert _returned(saved)["X-MC-Event-Id"] == "123"
    assert saved["To"] == "bounce+123-abc@bounces.test"


# -- batches, done and set aside --------------------------------------------------------------------


def test_imap_batches_are_bounded_and_done_and_set_aside_move_between_folders(server: MailServer) -> None:
    for event_id in (1, 2, 3):
        _bounce(server, event_id)
    server.wait_for_messages(3)

    with ImapMailbox(_settings(server, "imap")) as mailbox:
        first = mailbox.fetch(2)
        second = mailbox.fetch(2)
        assert (len(first), len(second), mailbox.fetch(2)) == (2, 1, [])
        by_tag = dict(zip(_tags([m.raw or b"" for m in first + second]), first + second, strict=True))
        mailbox.done([by_tag["1-abc"].uid])
        mailbox.set_aside([by_tag["2-abc"].uid])
        # The third is neither: it stays where it is.

    assert _tags(server.messages("MC-Processed")) == ["1-abc"]
    assert _tags(server.messages("MC-Unmatched")) == ["2-abc"]
    assert _tags(server.messages("INBOX")) == ["3-abc"]

    # A new session reads what was left, and moving again adds to the existing folders.
    with ImapMailbox(_settings(server, "imap")) as mailbox:
        (left,) = mailbox.fetch(10)
        mailbox.done([left.uid])
    assert sorted(_tags(server.messages("MC-Processed"))) == ["1-abc", "3-abc"]
    assert server.messages("INBOX") == []


def test_imap_without_move_copies_then_expunges(server: MailServer) -> None:
    for event_id in (10, 11):
        _bounce(server, event_id)
    server.wait_for_messages(2)

    with ImapMailbox(_settings(server, "imap"), use_move=False) as mailbox:
        batch = mailbox.fetch(10)
        mailbox.done([batch[0].uid])
        mailbox.set_aside([batch[1].uid])

    assert len(server.messages("MC-Processed")) == 1
    assert len(server.messages("MC-Unmatched")) == 1
    assert server.messages("INBOX") == []  # expunged, not just flagged


def test_imap_can_delete_what_was_handled_instead(server: MailServer) -> None:
    _bounce(server, 20)
    server.wait_for_messages(1)

    with ImapMailbox(_settings(server, "imap", delete_done=True)) as mailbox:
        (message,) = mailbox.fetch(10)
        mailbox.done([message.uid])

    assert server.messages("INBOX") == []
    assert server.messages("MC-Processed") == []


def test_pop3_deletes_what_was_done_and_leaves_what_was_set_aside(server: MailServer) -> None:
    for event_id in (30, 31, 32):
        _bounce(server, event_id)
    server.wait_for_messages(3)

    with Pop3Mailbox(_settings(server, "pop3")) as mailbox:
        handled, aside = mailbox.fetch(2)
        mailbox.done([handled.uid])  # committed now; the next call logs in again
        mailbox.set_aside([aside.uid])
        (last,) = mailbox.fetch(2)  # handed-out messages are not handed out again
        assert mailbox.fetch(2) == []

    tags = _tags([m.raw or b"" for m in (handled, aside, last)])
    assert sorted(tags) == ["30-abc", "31-abc", "32-abc"]
    assert sorted(_tags(server.messages())) == sorted(tags[1:])


# -- a run that dies before done() ------------------------------------------------------------------

CRASH = """\
import os, sys
sys.path[:0] = ["plugins", "."]
from messagecenter.feedback.mailbox import MailboxSettings, open_mailbox
settings = MailboxSettings(protocol=sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]),
                           login=sys.argv[3], password=sys.argv[4], timeout=10.0)
mailbox = open_mailbox(settings)
batch = mailbox.fetch(10)
print(len(batch), flush=True)
if sys.argv[1] == "pop3":
    mailbox._pop.dele(1)  # half-way through a delete: no QUIT follows
os._exit(3)  # the worker dies: no done(), no logout
"""


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_nothing_is_lost_when_the_reader_dies_before_done(server: MailServer, protocol: str) -> None:
    for event_id in (40, 41):
        _bounce(server, event_id)
    before = server.wait_for_messages(2)
    port = server.imap_port if protocol == "imap" else server.pop3_port

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, protocol, str(port), server.login, server.password],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )

    assert crashed.returncode == 3, crashed.stderr.decode()
    assert crashed.stdout.strip() == b"2"
    with open_mailbox(_settings(server, protocol)) as mailbox:
        again = mailbox.fetch(10)
    assert sorted(m.raw for m in again) == sorted(before)
    assert sorted(server.messages()) == sorted(before)


# -- the size limit -------------------------------------------------------------------------------


def _send_large(server: MailServer, size: int) -> None:
    line = "x" * 76 + "\n"
    large = _original(50, body=line * (size // len(line) + 1))
    server.send(large, sender="news@shop.test", recipients=[server.bounce_address("large")])


def test_imap_reports_an_oversized_message_without_downloading_it(server: MailServer) -> None:
    _send_large(server, 300_000)
    _bounce(server, 51)
    server.wait_for_messages(2)
    seen = len(_ended_sessions(server, "imap"))

    with ImapMailbox(_settings(server, "imap", max_size=100_000)) as mailbox:
        batch = mailbox.fetch(10)
        large = [m for m in batch if m.too_large]
        (small,) = [m for m in batch if not m.too_large]
        assert [(m.raw, m.size > 300_000) for m in large] == [(None, True)]
        assert small.raw is not None
        assert len(small.raw) == small.size < 100_000
        mailbox.set_aside([large[0].uid])
        mailbox.done([small.uid])

    # Dovecot counts what it sent in the session: the small report, not the 300 kB message.
    ours = _ended_sessions(server, "imap", seen + 1)[seen]
    sent = re.search(r"Logged out in=\d+ out=(\d+)", ours)
    assert sent, ours
    assert int(sent[1]) < 100_000
    (kept,) = server.messages("MC-Unmatched")
    assert len(kept) > 300_000  # set aside whole, for a person to look at


def test_pop3_reports_an_oversized_message_without_retrieving_it(server: MailServer) -> None:
    _send_large(server, 300_000)
    _bounce(server, 52)
    server.wait_for_messages(2)
    seen = len(_ended_sessions(server, "pop3"))

    with Pop3Mailbox(_settings(server, "pop3", max_size=100_000)) as mailbox:
        batch = mailbox.fetch(10)
    assert sorted((m.too_large, m.raw is None) for m in batch) == [(False, False), (True, True)]
    ours = _ended_sessions(server, "pop3", seen + 1)[seen]
    retrieved = re.search(r"Logged out top=\d+/\d+, retr=(\d+)/(\d+)", ours)
    assert retrieved, ours
    assert (int(retrieved[1]), int(retrieved[2]) < 100_000) == (1, True)


def test_pop3_reads_lines_longer_than_poplib_allows(server: MailServer) -> None:
    """poplib stops at 2048-byte lines; a message within the size limit may well have longer ones."""
    raw = b"From: news@shop.test\r\nTo: x@bounces.test\r\nSubject: long\r\n\r\n" + b"y" * 5000 + b"\r\n"
    server.send(raw, sender="news@shop.test", recipients=[server.bounce_address("long")])
    server.wait_for_messages(1)

    with Pop3Mailbox(_settings(server, "pop3")) as mailbox:
        (message,) = mailbox.fetch(1)
    assert message.raw is not None
    assert b"y" * 5000 in message.raw


# -- failures and the server itself ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_wrong_password_is_a_mailbox_error(server: MailServer, protocol: str) -> None:
    with pytest.raises(MailboxError, match=str(server.host)):
        open_mailbox(_settings(server, protocol, password="wrong"))


def test_the_server_stops_without_leaving_a_process_or_a_file() -> None:
    with MailServer() as server:
        root = server.root
        processes = set()
        for reaper in (server._postfix, server._dovecot):
            assert reaper is not None
            processes |= {reaper.process.pid} | descendants(reaper.process.pid)
        assert len(processes) > 6  # the reapers, Postfix's master and daemons, Dovecot's
    alive = [pid for pid in processes if Path(f"/proc/{pid}").exists()]
    assert alive == []  # not even zombies: each reaper waited for all of them
    assert not root.exists()


def test_missing_packages_fail_with_the_apt_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI must not skip these tests silently: a machine without the packages fails, saying why."""
    monkeypatch.setattr(mailserver.shutil, "which", lambda name, path=None: None)
    with pytest.raises(MailServerError, match="apt-get install -y postfix dovecot-imapd dovecot-pop3d"):
        MailServer().start()


def test_fetch_keeps_messages_in_order(server: MailServer) -> None:
    for event_id in (60, 61, 62):
        _bounce(server, event_id)
        server.wait_for_messages(event_id - 59)
    with ImapMailbox(_settings(server, "imap")) as mailbox:
        batch: list[InboundMessage] = mailbox.fetch(10)
    assert _tags([m.raw or b"" for m in batch]) == ["60-abc", "61-abc", "62-abc"]
    assert [int(m.uid) for m in batch] == sorted(int(m.uid) for m in batch)
