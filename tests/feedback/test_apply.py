"""Feedback applied to a real execution database: logs, event statuses, quarantine, replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from messagecenter.core.settings import FeedbackSettings
from messagecenter.core.types import Channel
from messagecenter.db.queries import query
from messagecenter.execution.status import update_events_status
from messagecenter.feedback.apply import Feedback, apply_feedback, qualify_send_failures
from messagecenter.feedback.quarantine import AddressStatus, get_state, release_automatically, set_status
from messagecenter.feedback.types import FailureReason, FailureType, Qualification

RULES = FeedbackSettings(max_errors=3, significant_error=timedelta(days=1))
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def qualify(text: str, status: str | None) -> Qualification:
    """A small stand-in for the rules table: enough to drive each path of apply_feedback."""
    lowered = text.lower()
    if "5.1.1" in lowered or "user unknown" in lowered:
        return Qualification(FailureType.HARD, FailureReason.USER_UNKNOWN, "user unknown", "u")
    if "mailbox full" in lowered:
        return Qualification(FailureType.SOFT, FailureReason.MAILBOX_FULL, "mailbox full", "m")
    if "out of office" in lowered:
        return Qualification(FailureType.IGNORED, FailureReason.NOT_DEFINED, "out of office", "o")
    return Qualification(FailureType.SOFT, FailureReason.NOT_DEFINED, lowered, None)


def sent(
    conn: psycopg.Connection[Any], event_id: int, address: str, *, message_id: str | None = None
) -> None:
    """An event Sent: its row in the queue and its delivery log, as the workflows leave them."""
    conn.execute(
        "INSERT INTO mc.batch_event (id, event_type, channel, email, status, created, last_modified) "
        "VALUES (%s, 'ORDER', 0, %s, 2, now(), now())",
        (event_id, address),
    )
    conn.execute(
        "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address, message_id) "
        "VALUES (%s, 'batch', 2, 0, %s, %s)",
        (event_id, address, message_id),
    )


def log_row(conn: psycopg.Connection[Any], event_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, delivery, failure_type, failure_reason, complained_at IS NOT NULL "
        "FROM mc.delivery_log WHERE event_id = %s",
        (event_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def copy_statuses(conn: psycopg.Connection[Any]) -> None:
    update_events_status(conn)


def event_status(conn: psycopg.Connection[Any], event_id: int) -> int:
    row = conn.execute("SELECT status FROM mc.batch_event WHERE id = %s", (event_id,)).fetchone()
    assert row is not None
    return int(row[0])


def apply(conn: psycopg.Connection[Any], *items: Feedback) -> Any:
    return apply_feedback(conn, items, qualify=qualify, rules=RULES)


def test_a_hard_bounce_turns_sent_into_failed_and_quarantines(conn) -> None:
    sent(conn, 1, "gone@example.com")
    counts = apply(conn, Feedback("mailbox", "failed", event_id=1, text="550 5.1.1 user unknown", at=T0))
    assert (counts.applied, counts.failed, counts.quarantined) == (1, 1, 1)
    assert log_row(conn, 1) == (4, 2, FailureType.HARD, FailureReason.USER_UNKNOWN, False)
    copy_statuses(conn)
    assert event_status(conn, 1) == 4
    state = get_state(conn, Channel.EMAIL, "Gone@Example.com")
    assert state.status == AddressStatus.QUARANTINE
    assert state.failure_reason == "User unknown"


def test_a_failed_log_is_final_whatever_comes_later(conn) -> None:
    sent(conn, 1, "gone@example.com", message_id="p-1")
    apply(conn, Feedback("ses", "failed", message_id="p-1", text="5.1.1", event_key="e1"))
    late = apply(
        conn,
        Feedback("ses", "delivered", message_id="p-1", event_key="e2"),
        Feedback("ses", "deferred", message_id="p-1", text="mailbox full", event_key="e3"),
    )
    assert late.applied == 0
    assert log_row(conn, 1)[:2] == (4, 2)


def test_a_replayed_provider_event_changes_nothing(conn) -> None:
    sent(conn, 1, "soft@example.com", message_id="p-1")
    item = Feedback("sendgrid", "failed", message_id="p-1", text="mailbox full", event_key="sg-1")
    assert apply(conn, item).applied == 1
    again = apply(conn, item, item)
    assert (again.duplicates, again.applied) == (2, 0)
    assert get_state(conn, Channel.EMAIL, "soft@example.com").errors == 1


def test_soft_errors_count_once_per_period_and_quarantine_at_the_threshold(conn) -> None:
    for n in range(1, 6):
        sent(conn, n, "full@example.com")
    # Two bounces the same day count once; then one a day: the third counted error quarantines.
    apply(conn, Feedback("mailbox", "failed", event_id=1, text="mailbox full", at=T0))
    apply(conn, Feedback("mailbox", "failed", event_id=2, text="mailbox full", at=T0 + timedelta(hours=2)))
    state = get_state(conn, Channel.EMAIL, "full@example.com")
    assert (state.status, state.errors) == (AddressStatus.WITH_ERRORS, 1)
    apply(conn, Feedback("mailbox", "failed", event_id=3, text="mailbox full", at=T0 + timedelta(days=1)))
    assert get_state(conn, Channel.EMAIL, "full@example.com").status == AddressStatus.WITH_ERRORS
    apply(conn, Feedback("mailbox", "failed", event_id=4, text="mailbox full", at=T0 + timedelta(days=2)))
    state = get_state(conn, Channel.EMAIL, "full@example.com")
    assert (state.status, state.errors) == (AddressStatus.QUARANTINE, 3)


def test_a_complaint_denylists_and_nothing_releases_it(conn) -> None:
    sent(conn, 1, "angry@example.com")
    sent(conn, 2, "angry@example.com")
    apply(conn, Feedback("mailbox", "complaint", event_id=1))
    assert log_row(conn, 1)[4] is True
    assert log_row(conn, 1)[0] == 2  # a complaint is about a delivered message: it stays Sent
    apply(conn, Feedback("mailbox", "failed", event_id=2, text="550 5.1.1", at=T0))
    assert get_state(conn, Channel.EMAIL, "angry@example.com").status == AddressStatus.DENYLISTED
    conn.execute("UPDATE mc.quarantine SET last_error = now() - interval '400 days'")
    release_automatically(
        conn, FeedbackSettings(reset_after=timedelta(seconds=1), mailbox_full_release=timedelta(seconds=1))
    )
    assert get_state(conn, Channel.EMAIL, "angry@example.com").status == AddressStatus.DENYLISTED


def test_a_delivered_message_clears_with_errors(conn) -> None:
    sent(conn, 1, "flaky@example.com")
    sent(conn, 2, "flaky@example.com")
    apply(conn, Feedback("mailbox", "failed", event_id=1, text="mailbox full", at=T0))
    assert get_state(conn, Channel.EMAIL, "flaky@example.com").status == AddressStatus.WITH_ERRORS
    apply(conn, Feedback("mailbox", "delivered", event_id=2))
    assert get_state(conn, Channel.EMAIL, "flaky@example.com").status == AddressStatus.VALID


def test_an_auto_reply_is_kept_but_changes_no_status(conn) -> None:
    sent(conn, 1, "away@example.com")
    apply(conn, Feedback("mailbox", "ignored", event_id=1, text="Out of office until Monday"))
    assert log_row(conn, 1)[:3] == (2, None, FailureType.IGNORED)
    assert get_state(conn, Channel.EMAIL, "away@example.com").status == AddressStatus.VALID


def test_unmatched_feedback_is_kept_and_quarantines_nobody(conn) -> None:
    sent(conn, 1, "someone@example.com")
    counts = apply(conn, Feedback("twilio", "failed", message_id="SM-unknown", text="5.1.1"))
    assert counts.unmatched == 1
    kept = conn.execute("SELECT provider, message_id, kind FROM mc.feedback_unmatched").fetchall()
    assert kept == [("twilio", "SM-unknown", "failed")]
    assert conn.execute("SELECT count(*) FROM mc.quarantine").fetchone() == (0,)


def test_unqualified_texts_are_counted_never_dropped(conn) -> None:
    sent(conn, 1, "a@example.com")
    sent(conn, 2, "b@example.com")
    apply(
        conn,
        Feedback("mailbox", "failed", event_id=1, text="weird thing"),
        Feedback("mailbox", "failed", event_id=2, text="weird thing"),
    )
    rows = conn.execute(
        "SELECT feedback_key, failure_reason, occurrences FROM mc.feedback_message"
    ).fetchall()
    assert rows == [("weird thing", 0, 2)]


def test_send_refusals_are_qualified_by_the_same_rules(conn) -> None:
    conn.execute(
        "INSERT INTO mc.delivery_log (event_id, queue, status, channel, address, provider_answer) VALUES "
        "(1, 'batch', 4, 0, 'nobody@example.com', '550 5.1.1 <nobody@example.com>: user unknown'), "
        "(2, 'batch', 4, 0, 'x@example.com', NULL)"
    )
    assert qualify_send_failures(conn, qualify=qualify, rules=RULES) == 2
    assert get_state(conn, Channel.EMAIL, "nobody@example.com").status == AddressStatus.QUARANTINE
    assert get_state(conn, Channel.EMAIL, "x@example.com").status == AddressStatus.VALID
    assert qualify_send_failures(conn, qualify=qualify, rules=RULES) == 0


@pytest.mark.parametrize("status", [AddressStatus.QUARANTINE, AddressStatus.DENYLISTED])
def test_operators_add_and_release(conn, status: AddressStatus) -> None:
    assert set_status(conn, Channel.SMS, "+33600000000", status, reason="by hand").status == status
    rows = conn.execute(query("quarantined"), {"channel": 1, "addresses": ["+33600000000"]}).fetchall()
    assert rows == [("+33600000000", int(status))]
    assert set_status(conn, Channel.SMS, "+33600000000", AddressStatus.VALID).status == AddressStatus.VALID
    assert conn.execute(query("quarantined"), {"channel": 1, "addresses": ["+33600000000"]}).fetchall() == []


def test_a_message_id_quoted_without_brackets_finds_its_log(conn) -> None:
    sent(conn, 1, "ann@example.com", message_id="<179.42.mc1@shop.test>")
    counts = apply(conn, Feedback("mailgun", "failed", message_id="179.42.mc1@shop.test", text="5.1.1"))
    assert (counts.applied, counts.unmatched) == (1, 0)


def test_an_overlong_id_is_kept_as_its_hash(conn) -> None:
    counts = apply(conn, Feedback("mailbox", "failed", message_id="x" * 100_000, event_key="k" * 100_000))
    assert counts.unmatched == 1
    (kept,) = conn.execute("SELECT message_id FROM mc.feedback_unmatched").fetchone()
    assert kept.startswith("sha256:")
    assert len(kept) < 100
