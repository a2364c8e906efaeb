"""Reading the bounce mailbox batch by batch against a real Dovecot, while another client uses it.

``ImapMailbox`` searches the folder only when the UIDs of its last search run short and reads each
batch with one ``UID FETCH``: messages added meanwhile must still come (after the others), messages
another client flagged deleted must not, and filing a batch away must touch nothing else in the
folder (the server announces MOVE and UIDPLUS only once logged in).
"""

from __future__ import annotations

import imaplib
import time
from email.message import EmailMessage
from typing import Any

import pytest

from messagecenter.feedback.mailbox import ImapMailbox, MailboxSettings
from tests.support.mailserver import MailServer, mail_server_fixture

mail_server = mail_server_fixture()


@pytest.fixture
def server(mail_server: MailServer) -> MailServer:
    """The module's server with an empty bounce mailbox."""
    mail_server.clear()
    return mail_server


def _settings(server: MailServer, **overrides: Any) -> MailboxSettings:
    values: dict[str, Any] = {
        "protocol": "imap",
        "host": server.host,
        "port": server.imap_port,
        "login": server.login,
        "password": server.password,
        "timeout": 10.0,
    }
    return MailboxSettings(**(values | overrides))


def _append(server: MailServer, *tags: str) -> None:
    """Put one small mail per tag into INBOX, in this order."""
    with server.imap() as client:
        for tag in tags:
            mail = EmailMessage()
            mail["From"] = "MAILER-DAEMON@mx.mail.test"
            mail["To"] = f"bounce+{tag}@bounces.test"
            mail["Subject"] = f"mail {tag}"
            mail.set_content(f"mail {tag}\n")
            client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), mail.as_bytes())


def _flag_deleted(server: MailServer, tag: str) -> None:
    """Another client flags the mail ``tag`` for deletion, without expunging it."""
    with server.imap() as client:
        client.select("INBOX")
        _, found = client.uid("SEARCH", "SUBJECT", f'"mail {tag}"')
        (uid,) = found[0].split()
        assert client.uid("STORE", uid.decode(), "+FLAGS", r"(\Deleted)")[0] == "OK"


def _subject(raw: bytes) -> str:
    return raw.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].strip().decode()


def _subjects(messages: list[Any]) -> list[str]:
    return [_subject(m.raw or b"") for m in messages]


def _subjects_in(server: MailServer, folder: str) -> list[str]:
    return sorted(_subject(raw) for raw in server.messages(folder))


def test_mails_added_after_the_search_come_after_the_others(server: MailServer) -> None:
    _append(server, "a", "b")
    with ImapMailbox(_settings(server)) as mailbox:
        first = mailbox.fetch(1)  # the search found a and b
        _append(server, "c")
        second, third, last = mailbox.fetch(1), mailbox.fetch(1), mailbox.fetch(1)
    assert [_subjects(b) for b in (first, second, third)] == [["mail a"], ["mail b"], ["mail c"]]
    assert last == []


def test_a_mail_flagged_deleted_after_the_search_is_not_handed_out(server: MailServer) -> None:
    _append(server, "a", "b", "c")
    with ImapMailbox(_settings(server)) as mailbox:
        first = mailbox.fetch(1)  # the search found a, b and c
        _flag_deleted(server, "b")
        # b is skipped, and the batch is not empty while c is left: an empty one ends the run.
        second, last = mailbox.fetch(1), mailbox.fetch(1)
    assert (_subjects(first), _subjects(second), last) == (["mail a"], ["mail c"], [])


def test_filing_a_batch_away_touches_no_other_mail_of_the_folder(server: MailServer) -> None:
    _append(server, "a", "b", "c")
    with ImapMailbox(_settings(server)) as mailbox:
        batch = mailbox.fetch(10)
        assert _subjects(batch) == ["mail a", "mail b", "mail c"]
        _flag_deleted(server, "c")  # another client's business: it stays until that client expunges
        mailbox.done([batch[0].uid])
        mailbox.set_aside([batch[1].uid])
    assert _subjects_in(server, "MC-Processed") == ["mail a"]
    assert _subjects_in(server, "MC-Unmatched") == ["mail b"]
    assert _subjects_in(server, "INBOX") == ["mail c"]


def test_oversized_mails_of_a_batch_keep_their_place_without_their_body(server: MailServer) -> None:
    _append(server, "a")
    with server.imap() as client:
        large = EmailMessage()
        large["Subject"] = "mail large"
        large.set_content(("x" * 76 + "\n") * 30)
        client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), large.as_bytes())
    _append(server, "b")
    with ImapMailbox(_settings(server, max_size=1_000)) as mailbox:
        batch = mailbox.fetch(10)
    assert [(m.too_large, m.raw is None) for m in batch] == [(False, False), (True, True), (False, False)]
    assert batch[1].size > 1_000
    assert [m.size for m in batch if not m.too_large] == [len(m.raw or b"") for m in batch if not m.too_large]
