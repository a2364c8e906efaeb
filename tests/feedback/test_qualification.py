"""Qualification: normalised texts share one row, real MTA answers get Campaign's type and reason."""

from __future__ import annotations

import json
import logging
import time

import pytest

from messagecenter.feedback.qualification import (
    MAX_TEXT_CHARS,
    SEED_RULES,
    Rule,
    normalise,
    qualify,
    qualify_smtp_reply,
    rule_rows,
    rules_from_rows,
    status_code,
)
from messagecenter.feedback.types import REASON_LABELS, FailureReason, FailureType

HARD, SOFT, IGNORED = FailureType.HARD, FailureType.SOFT, FailureType.IGNORED
R = FailureReason


def test_campaign_codes_and_labels() -> None:
    assert (R.USER_UNKNOWN, R.INVALID_DOMAIN, R.MAILBOX_FULL, R.DENYLISTED, R.REFUSED) == (1, 2, 5, 8, 20)
    assert R.CONTROL_ADDRESS == 127
    assert set(REASON_LABELS) == set(FailureReason)
    assert R.QUARANTINED.label == "Address in quarantine"
    assert (FailureType.SOFT, FailureType.HARD) == (1, 2)


def test_similar_messages_normalise_to_one_text() -> None:
    first = normalise(
        "550 5.1.1 <john.doe@example.net>: Recipient address rejected: User unknown in local "
        "recipient table; queue id 3F1A22C0123 at Tue, 12 Nov 2024 10:15:32 from [203.0.113.5]"
    )
    second = normalise(
        "550 5.1.1 <Anna@Other.example.ORG>:   Recipient address rejected: User unknown in local\n"
        "recipient table; queue id 9B77AA01 at Wed, 3 Jan 2025 23:01:09 from [198.51.100.77]"
    )
    assert first == second
    assert first == (
        "550 5.1.1 <*>: recipient address rejected: user unknown in local recipient table; "
        "queue id #xxx# at #xxx# from [#xxx#]"
    )


def test_a_multi_line_reply_reads_as_one_sentence() -> None:
    text = normalise(
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\n"
        "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a640c23a62fsi1234567a.52 - gsmtp"
    )
    assert text == (
        "550 5.1.1 the email account that you tried to reach does not exist. please try double-checking "
        "the recipient's email address for typos or https://#xxx#/mail/?p=nosuchuser #xxx# - gsmtp"
    )


def test_normalised_text_is_bounded_and_quick_on_pathological_input() -> None:
    assert len(normalise("user unknown " * 100_000)) <= MAX_TEXT_CHARS
    assert len(qualify("x " * 100_000, status="5.1.1").text) <= MAX_TEXT_CHARS
    started = time.monotonic()
    for text in ("a" * 1_000_000, "a." * 500_000, "a@" * 500_000, "1.1.1." * 200_000, "a-" * 500_000):
        qualify(text)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [
        # Postfix, local and virtual
        ("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown in local recipient table",
         None, (HARD, R.USER_UNKNOWN)),
        ("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown in virtual mailbox table",
         None, (HARD, R.USER_UNKNOWN)),
        ('unknown user: "john.doe"', "5.1.1", (HARD, R.USER_UNKNOWN)),
        # Gmail, Exchange on premises and Office 365, Yahoo, qmail
        ("550-5.1.1 The email account that you tried to reach does not exist.", None, (HARD, R.USER_UNKNOWN)),
        ("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", None, (HARD, R.USER_UNKNOWN)),
        ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient a@contoso.com not found by SMTP address "
         "lookup", None, (HARD, R.USER_UNKNOWN)),
        ("554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]", None,
         (HARD, R.USER_UNKNOWN)),
        ("Sorry, no mailbox here by that name. (#5.1.1)", None, (HARD, R.USER_UNKNOWN)),
        # Mailbox full
        ("452 4.2.2 The email account that you tried to reach is over quota.", None, (SOFT, R.MAILBOX_FULL)),
        ("552 5.2.2 Mailbox full", None, (SOFT, R.MAILBOX_FULL)),
        ("554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException", None,
         (SOFT, R.MAILBOX_FULL)),
        # Domain and network
        ("Host or domain name not found. Name service error for name=example.invalid type=MX: Host not found",
         None, (SOFT, R.INVALID_DOMAIN)),
        ("connect to mx.example.com[192.0.2.10]:25: Connection timed out", None, (SOFT, R.UNREACHABLE)),
        ("delivery temporarily suspended: connect to mx.example.com[192.0.2.10]:25: Connection refused",
         "4.4.1", (SOFT, R.UNREACHABLE)),
        # Refusals
        ("554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org", None,
         (SOFT, R.REFUSED)),
        ("550 5.7.1 Message rejected as spam by Content Filtering.", None, (SOFT, R.REFUSED)),
        ("550 5.7.26 This message does not pass authentication checks (SPF and DKIM both do not pass).",
         None, (SOFT, R.REFUSED)),
        # Account state
        ("550 5.2.1 The email account that you tried to reach is disabled.", None,
         (SOFT, R.ACCOUNT_DISABLED)),
        ("550 5.1.1 This mailbox has been closed permanently", None, (HARD, R.ACCOUNT_DISABLED)),
        # Not the address's fault: never quarantines
        ("Out of Office: back on 2024-03-05", None, (IGNORED, R.NOT_DEFINED)),
        ("550 5.7.1 Sender address rejected: Access denied", None, (IGNORED, R.REFUSED)),
        ("552 5.3.4 Message size exceeds fixed limit", None, (IGNORED, R.REFUSED)),
        ("450 4.2.0 <a@b.example>: Recipient address rejected: Greylisted, see http://postgrey.example/",
         None, (IGNORED, R.REFUSED)),
        # Only the status code says something
        ("rejected", "5.1.1", (HARD, R.USER_UNKNOWN)),
        ("rejected", "4.2.2", (SOFT, R.MAILBOX_FULL)),
        ("no answer given", "4.0.0", (SOFT, R.UNREACHABLE)),
    ],
)  # fmt: skip
def test_seed_rules_qualify_real_answers(
    text: str, status: str | None, expected: tuple[FailureType, FailureReason]
) -> None:
    qualification = qualify(text, SEED_RULES, status)
    assert (qualification.type, qualification.reason) == expected
    assert qualification.qualified
    assert qualification.pattern is not None


def test_unknown_texts_stay_unqualified_with_the_class_type() -> None:
    unknown = qualify("550 5.0.0 something nobody has seen")
    assert (unknown.type, unknown.reason, unknown.qualified) == (SOFT, R.NOT_DEFINED, False)
    assert unknown.text == "550 5.0.0 something nobody has seen"
    assert qualify("250 2.0.0 Ok: queued as 4XnT3q0ZkLz9rxK").type is IGNORED
    assert qualify("").reason is R.NOT_DEFINED


def test_the_status_is_put_in_front_of_the_stored_text() -> None:
    assert qualify("Rejected", status="5.1.1 (bad destination mailbox)").text == "5.1.1 rejected"
    assert qualify("550 5.1.1 rejected", status="5.1.1").text == "550 5.1.1 rejected"
    assert status_code("smtp; 550 5.1.10 RESOLVER") == "5.1.10"
    assert status_code("version 1.2.3.4") is None


def test_rules_are_tried_by_priority_then_in_order() -> None:
    rules = [
        Rule("mailbox", FailureType.SOFT, R.MAILBOX_FULL, priority=50),
        Rule("mailbox", FailureType.HARD, R.ACCOUNT_DISABLED, priority=10),
        Rule("mailbox", FailureType.IGNORED, R.REFUSED, priority=10),
    ]
    assert qualify("Mailbox closed", rules).reason is R.ACCOUNT_DISABLED


def test_seed_rows_round_trip_through_plain_values() -> None:
    rows = rule_rows()
    assert len(rows) >= 40
    assert json.loads(json.dumps(rows)) == [list(row) for row in rows]  # what a table can hold
    assert tuple(rules_from_rows(rows)) == SEED_RULES
    assert len({(row.pattern, row.priority) for row in rows}) == len(rows)


def test_broken_rows_are_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    rows = [("user unknown", 2, 1, 10), ("(unclosed", 2, 1, 10), ("x", 9, 1, 10), ("y", 1, 999, 10)]
    with caplog.at_level(logging.WARNING, logger="messagecenter.feedback.qualification"):
        rules = rules_from_rows(rows)
    assert [rule.pattern for rule in rules] == ["user unknown"]
    assert len(caplog.records) == 3


def test_synchronous_smtp_refusals_use_the_same_rules() -> None:
    user_unknown = qualify_smtp_reply(
        550, b"5.1.1 <a@b.example>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert (user_unknown.type, user_unknown.reason) == (HARD, R.USER_UNKNOWN)
    assert user_unknown.text.startswith("550 5.1.1 <*>:")
    full = qualify_smtp_reply(452, "4.2.2 Mailbox full")
    assert (full.type, full.reason) == (SOFT, R.MAILBOX_FULL)
    later = qualify_smtp_reply(421, "4.7.0 Try again later, closing connection.")
    assert later.type is SOFT
    assert qualify_smtp_reply(550, b"\xff\xfe not utf-8").reason is R.NOT_DEFINED


@pytest.mark.parametrize(
    ("text", "type_", "reason"),
    [
        (
            '404 {"error": {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}',
            "HARD",
            "USER_UNKNOWN",
        ),
        ('410 {"reason": "Unregistered", "timestamp": 1733500000000}', "HARD", "USER_UNKNOWN"),
        ('400 {"error": {"status": "INVALID_ARGUMENT"}}', "IGNORED", "NOT_DEFINED"),
        ('400 {"reason": "BadDeviceToken"}', "SOFT", "REFUSED"),
        ("SR UNDELIV 001|MESSAGE=id:1234 sub:001 dlvrd:000 stat:UNDELIV err:001", "SOFT", "REFUSED"),
        ("SR EXPIRED 000|MESSAGE=id:1234 stat:EXPIRED", "SOFT", "UNREACHABLE"),
        ("30005 Unknown destination handset", "HARD", "USER_UNKNOWN"),
        ("30003 Unreachable destination handset", "IGNORED", "NOT_CONNECTED"),
    ],
)
def test_push_and_sms_answers_are_qualified_like_campaign(text: str, type_: str, reason: str) -> None:
    found = qualify(text)
    assert (found.type.name, found.reason.name) == (type_, reason)
