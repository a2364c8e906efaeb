"""Inbound mail: real DSNs, complaints, auto-replies and legacy bounces are read and matched to
their event; forged, huge, deep or broken mail never raises and stays bounded."""

from __future__ import annotations

import random
import smtplib
import time
from email.message import Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from messagecenter.core.ids import make_event_id
from messagecenter.delivery import OutgoingMessage, SmtpClient, SmtpTransport, smtp
from messagecenter.feedback import bounces, verp
from messagecenter.feedback.bounces import Kind, match_event, parse
from messagecenter.feedback.qualification import qualify
from messagecenter.feedback.types import FailureReason, FailureType

FIXTURES = Path(__file__).parent / "fixtures"
KEY = b"feedback-tests-verp-key-0001"  # the key the fixtures' return paths were signed with
DOMAIN = "bounces.shop.example.com"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "event_id", "address", "status", "diagnostic"),
    [
        ("postfix_user_unknown.eml", 72057594037928937, "john.doe@example.net", "5.1.1",
         "550 5.1.1 <john.doe@example.net>: Recipient address rejected: User unknown in local recipient"),
        ("gmail_no_such_user.eml", 72057594037928938, "nobody.here.4242@gmail.com", "5.1.1",
         "550-5.1.1 The email account that you tried to reach does not exist."),
        ("exchange_recip_not_found.eml", 72057594037928939, "jane.roe@contoso.com", "5.1.1",
         "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"),
    ],
)  # fmt: skip
def test_dsn_fixtures_are_read_matched_and_qualified(
    name: str, event_id: int, address: str, status: str, diagnostic: str
) -> None:
    report = parse(fixture(name))
    assert report.kind is Kind.DSN
    assert report.errors == []
    [recipient] = report.recipients
    assert (recipient.address, recipient.action, recipient.status) == (address, "failed", status)
    assert recipient.failed
    assert recipient.diagnostic.startswith(diagnostic)
    # Every kind of evidence points at the same event; the signed one is used.
    match = match_event(report, KEY)
    assert match == (event_id, "verp")
    assert match.authenticated
    assert report.event_ids == [event_id]
    assert [verp.event_id_from_message_id(value) for value in report.message_ids] == [event_id]
    qualification = qualify(recipient.diagnostic, status=recipient.status)
    assert (qualification.type, qualification.reason) == (FailureType.HARD, FailureReason.USER_UNKNOWN)


def test_postfix_dsn_details() -> None:
    report = parse(fixture("postfix_user_unknown.eml"))
    [recipient] = report.recipients
    assert recipient.original_recipient == recipient.final_recipient == "john.doe@example.net"
    assert recipient.remote_mta == "mx1.example.net"
    assert report.reporting_mta == "mail.example.net"
    assert report.subject == "Undelivered Mail Returned to Sender"
    assert report.text.startswith("This is the mail system at host mail.example.net.")


def test_the_human_text_is_found_inside_nested_alternatives() -> None:
    report = parse(fixture("gmail_no_such_user.eml"))  # report > related > alternative > text/plain
    assert report.text.startswith("** Address not found **")
    assert "gmail-smtp-in.l.google.com" in (report.recipients[0].remote_mta or "")


def test_rfc5965_example_complaint() -> None:
    report = parse(fixture("arf_rfc5965.eml"))
    assert report.kind is Kind.ARF
    assert report.feedback_type == "abuse"
    assert report.original_mail_from == "somespammer@example.net"
    assert report.original_rcpt_to == ["user@example.com"]
    assert report.message_ids == ["8787KJKJ3K4J3K4J3K4J3.mail@example.net"]
    assert match_event(report, KEY) is None  # not one of ours


def test_complaint_about_our_message_finds_its_event() -> None:
    report = parse(fixture("arf_complaint.eml"))
    assert report.kind is Kind.ARF
    assert report.feedback_type == "abuse"
    assert report.original_rcpt_to == []  # redacted, as providers do
    assert match_event(report, KEY) == (make_event_id(200, 7), "verp")


def test_auto_reply_is_ignored_but_matched() -> None:
    report = parse(fixture("autoreply_vacation.eml"))
    assert report.kind is Kind.AUTOREPLY
    assert report.recipients == []
    assert match_event(report, KEY) == (72057594037928940, "verp")
    assert "out of the office" in report.text


def test_auto_reply_known_by_its_subject_matches_by_the_message_it_answers() -> None:
    reply = MIMEText("I am away until Monday.")
    reply["From"] = "Bob <bob@example.com>"
    reply["To"] = "Shop <no-reply@shop.example.com>"  # replied to the From, not the return path
    reply["Subject"] = "Automatic reply: Your order"
    reply["In-Reply-To"] = "<1.2.3.mc72057594037928940@shop.example.com>"
    report = parse(reply.as_bytes())
    assert report.kind is Kind.AUTOREPLY
    match = match_event(report, KEY)
    assert match == (72057594037928940, "message-id")
    assert not match.authenticated


def test_legacy_qmail_bounce_goes_to_the_heuristics() -> None:
    report = parse(fixture("qmail_failure_notice.eml"))
    assert report.kind is Kind.HEURISTIC
    [recipient] = report.recipients
    assert (recipient.address, recipient.action) == ("old.user@example.org", "failed")
    assert recipient.status == "5.1.1"
    assert "no mailbox here by that name" in recipient.diagnostic
    assert match_event(report, KEY) == (72057594037928941, "verp")
    # The original is quoted in the text: its Message-ID and event header are found there.
    assert report.event_ids == [72057594037928941]
    assert qualify(recipient.diagnostic, status=recipient.status).reason is FailureReason.USER_UNKNOWN


def test_a_forged_return_path_falls_back_to_unauthenticated_evidence() -> None:
    genuine = "bounce+jpia9pm8kix-h3u27zfahsoe@bounces.shop.example.com"
    forged = "bounce+jpia9pm8kiw-h3u27zfahsoe@bounces.shop.example.com"  # the neighbouring event
    raw = fixture("postfix_user_unknown.eml").replace(genuine.encode(), forged.encode())
    report = parse(raw)
    assert report.return_paths == [forged]
    assert verp.event_id_from(forged, KEY) is None
    match = match_event(report, KEY)
    assert match == (72057594037928937, "message-id")  # what the original says, flagged as such
    assert not match.authenticated
    headers_only = raw.split(b"Content-Description: Undelivered Message")[0]
    assert match_event(parse(headers_only), KEY) is None


def test_end_to_end_with_a_message_built_by_the_smtp_transport() -> None:
    event_id = make_event_id(3, 123456)
    transport = SmtpTransport(lambda: SmtpClient(smtplib.SMTP(), "no-reply@shop.example.com"), name="t")
    with transport:
        original = transport.build_message(
            OutgoingMessage(event_id, 0, "someone@example.net", subject="Hi", text="t", html="<p>h</p>")
        )
    assert bounces.EVENT_ID_HEADER == smtp.EVENT_ID_HEADER
    status = Message()
    for block in (
        {"Reporting-MTA": "dns; mx.example.net"},
        {
            "Final-Recipient": "rfc822; someone@example.net",
            "Action": "delayed",
            "Status": "4.2.2",
            "Diagnostic-Code": "smtp; 452 4.2.2 Mailbox full",
        },
    ):
        part = Message()
        for name, value in block.items():
            part[name] = value
        status.attach(part)
    status.set_type("message/delivery-status")
    dsn = MIMEMultipart("report", report_type="delivery-status")
    dsn.attach(MIMEText("Delayed."))
    dsn.attach(status)
    dsn.attach(MIMEMessage(original))
    dsn["To"] = verp.return_path(event_id, DOMAIN, KEY)
    report = parse(dsn.as_bytes())
    assert report.kind is Kind.DSN
    [recipient] = report.recipients
    assert (recipient.action, recipient.status, recipient.failed) == ("delayed", "4.2.2", False)
    assert match_event(report, KEY) == (event_id, "verp")
    assert report.event_ids == [event_id]
    assert verp.event_id_from_message_id(report.message_ids[0]) == event_id


def dsn(recipients: int) -> bytes:
    blocks = "".join(
        f"\nFinal-Recipient: rfc822; user{i}@example.net\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n"
        for i in range(recipients)
    )
    return (
        "From: MAILER-DAEMON@example.net\nTo: bounce+1-aaaaaaaaaaaa@x.example\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nFailed.\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; example.net\n"
        f"{blocks}\n--B--\n"
    ).encode()


def test_ten_thousand_recipients_are_bounded() -> None:
    report = parse(dsn(10_000))
    assert len(report.recipients) == bounces.MAX_RECIPIENTS
    assert report.recipients[-1].address == f"user{bounces.MAX_RECIPIENTS - 1}@example.net"
    assert report.truncated
    assert report.errors == ["10000 recipients: the first 1000 kept"]
    assert len(parse(dsn(10_000), max_recipients=3).recipients) == 3
    assert not parse(dsn(3)).truncated


def test_a_50_mb_mail_is_refused_quickly_but_its_envelope_is_read() -> None:
    address = verp.return_path(make_event_id(1, 9), DOMAIN, KEY)
    raw = f"From: MAILER-DAEMON@example.net\nTo: {address}\nSubject: huge\n\n".encode() + b"x" * 50_000_000
    started = time.monotonic()
    report = parse(raw)
    assert time.monotonic() - started < 2
    assert report.kind is Kind.UNKNOWN
    assert report.errors == [f"mail of {len(raw)} bytes is over the limit of 10000000: headers only"]
    assert match_event(report, KEY) == (make_event_id(1, 9), "verp")
    assert "over the limit of 100" in parse(fixture("qmail_failure_notice.eml"), max_bytes=100).errors[0]


def nested(depth: int, inner: str = "Content-Type: text/plain\n\nhello\n") -> bytes:
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth))
    tail = "".join(f"\n--b{i}--\n" for i in reversed(range(depth)))
    return f"From: x@example.net\nSubject: nested\n{head}{inner}{tail}".encode()


def test_deep_nesting_is_refused_before_the_parser_recurses() -> None:
    started = time.monotonic()
    report = parse(nested(5_000))  # the standard parser alone raises RecursionError past ~1000
    assert time.monotonic() - started < 2
    assert report.kind is Kind.UNKNOWN
    assert report.errors == ["more than 20 MIME boundaries: headers only"]
    assert report.subject == "nested"


def test_parts_beyond_the_depth_limit_are_skipped() -> None:
    status = (
        "Content-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\n"
    )
    assert parse(nested(3, status)).kind is Kind.DSN
    deep = parse(nested(3, status), max_depth=2)
    assert deep.kind is not Kind.DSN
    assert deep.errors == ["MIME parts deeper than 2 levels skipped"]


def test_a_million_empty_parts_are_refused() -> None:
    raw = b'From: x@example.net\nContent-Type: multipart/mixed; boundary="b"\n\n' + b"--b\n\n" * 1_000_000
    started = time.monotonic()
    report = parse(raw)
    assert time.monotonic() - started < 2
    assert report.errors == ["more than 1000 MIME delimiter lines: headers only"]


def _garbage(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


HOSTILE = {
    "empty": b"",
    "garbage": _garbage(200_000, 1),
    "garbage after headers": b"From: a@b.example\nContent-Type: multipart/report\n\n" + _garbage(100_000, 2),
    "no boundary parameter": b"Content-Type: multipart/report; report-type=delivery-status\n\n--x\n\nhi\n",
    "unclosed parts": b'Content-Type: multipart/mixed; boundary="a"\n\n--a\nContent-Type: message/rfc822\n\n',
    "empty report parts": (
        b'Content-Type: multipart/report; boundary="a"\n\n--a\nContent-Type: message/delivery-status\n\n'
        b"--a\nContent-Type: message/feedback-report\n\n--a\nContent-Type: text/rfc822-headers\n\n--a--\n"
    ),
    "encoded status part": (
        b'Content-Type: multipart/report; boundary="a"\n\n--a\nContent-Type: message/delivery-status\n'
        b"Content-Transfer-Encoding: base64\n\n!!!not base64!!!\n--a--\n"
    ),
    "non-utf-8 everywhere": (
        b"From: \xe9\xe8 <\xff@\xfe.example>\nSubject: =?utf-8?b?////?= \xc3\x28 =?x-unknown?q?abc?=\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\n"
        b"Content-Transfer-Encoding: quoted-printable\n\n=ZZ\xff\xfe\xfd =\n"
    ),
    "header without a body": b"Subject: " + b"a" * 2_000_000,
    "null bytes": b"From: a@b\x00.example\nTo: bounce+1-aa\x00aaaaaaaaaa@x.example\n\n\x00\x00",
    "malformed dsn fields": (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="a"\n\n--a\n'
        b"Content-Type: message/delivery-status\n\nReporting-MTA\n\nFinal-Recipient: ;;;\nStatus: x.y.z\n"
        b"Action:\nDiagnostic-Code: =?utf-8?q?=FF?=\n--a--\n"
    ),
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_never_raises(raw: bytes) -> None:
    report = parse(raw)
    assert isinstance(report, bounces.Report)
    assert match_event(report, KEY) is None
    assert len(report.recipients) <= bounces.MAX_RECIPIENTS
    assert all(len(value) <= bounces.MAX_FIELD_CHARS for value in (report.subject, report.sender))


def test_broken_dsn_fields_are_kept_as_said() -> None:
    report = parse(HOSTILE["malformed dsn fields"])
    assert report.kind is Kind.DSN
    [recipient] = report.recipients
    assert (recipient.address, recipient.action, recipient.status) == (";;;", "", None)


def test_undecodable_headers_are_replaced_not_fatal() -> None:
    report = parse(HOSTILE["non-utf-8 everywhere"])
    assert "\ufffd" in report.sender
    assert report.kind is Kind.UNKNOWN
