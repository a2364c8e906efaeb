"""The bounce mailbox, read like Campaign's inMail: parse, match, qualify, apply, then tidy the mailbox.

Each batch of mails is parsed (RFC 3464 delivery status notifications, RFC 5965 complaint reports,
auto-replies, non-standard bounces) and matched to its event: by the VERP return path (signed),
else by the original's Message-ID or event-id header, in which case the report must name the
recipient of that event's log (nobody signed that evidence). A report that names one of our return
paths whose signature is wrong is refused outright: forged or altered.

What a batch says is applied in one transaction
(:func:`~messagecenter.feedback.apply.apply_feedback`); only then are its mails moved out of the
way, so a crash or a lost database leaves every mail where it was, to be read again (applying it
twice changes nothing). Mails that cannot be matched or read are set aside, never deleted: an
operator reads them as Campaign's "Address for errors".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from messagecenter.core.settings import FeedbackSettings
from messagecenter.feedback import bounces
from messagecenter.feedback.apply import Feedback, FeedbackCounts, Kind, apply_feedback
from messagecenter.feedback.rules import qualifier

log = logging.getLogger(__name__)
SOURCE = "mailbox"
_ACTIONS: dict[str, Kind] = {"failed": "failed", "delayed": "deferred", "delivered": "delivered"}


class InboundMessage(Protocol):
    """One mail of the mailbox: its id there, its bytes (``None`` when too large to read)."""

    @property
    def uid(self) -> str: ...
    @property
    def raw(self) -> bytes | None: ...
    @property
    def too_large(self) -> bool: ...


class Mailbox(Protocol):
    """A bounce mailbox (IMAP or POP3): read in batches, then tidy what was handled."""

    def fetch(self, limit: int) -> Sequence[InboundMessage]: ...
    def done(self, uids: Sequence[str]) -> None: ...
    def set_aside(self, uids: Sequence[str]) -> None: ...


@dataclass
class InboxCounts:
    """What one run did with the mailbox, for the task log and XCom."""

    read: int = 0
    handled: int = 0
    set_aside: int = 0
    unmatched: int = 0
    unreadable: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    feedback: FeedbackCounts = field(default_factory=FeedbackCounts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "handled": self.handled,
            "set_aside": self.set_aside,
            "unmatched": self.unmatched,
            "unreadable": self.unreadable,
            "by_kind": dict(self.by_kind),
            **{f"feedback_{k}": v for k, v in self.feedback.as_dict().items()},
        }


def feedback_of(report: bounces.Report, key: bytes | None) -> list[Feedback]:
    """What one parsed mail says, as feedback items (empty: it cannot be matched to an event)."""
    match = bounces.match_event(report, key) if key else _unsigned_match(report)
    if match is None:
        return []
    signed = match.via == "verp"
    if key and report.return_paths and not signed:
        # It names return paths of ours, and none carries a valid signature: forged or altered.
        # The unsigned fallbacks are for reports that lost the envelope, not for these.
        return []
    if report.kind == bounces.Kind.ARF:
        reported = report.original_rcpt_to[0] if report.original_rcpt_to else None
        if not signed and reported is None:
            return []
        return [
            Feedback(
                SOURCE,
                "complaint",
                event_id=match.event_id,
                text=report.feedback_type or "abuse",
                expect_address=None if signed else reported,
            )
        ]
    if report.kind == bounces.Kind.AUTOREPLY:
        return [Feedback(SOURCE, "ignored", event_id=match.event_id, text=report.subject or "auto-reply")]
    items = []
    for recipient in report.recipients:
        kind = _ACTIONS.get(recipient.action or ("failed" if report.kind == bounces.Kind.HEURISTIC else ""))
        if kind is None:
            continue
        items.append(
            Feedback(
                SOURCE,
                kind,
                event_id=match.event_id,
                text=recipient.diagnostic or recipient.status or report.text[:500] or None,
                status=recipient.status,
                expect_address=None if signed else recipient.address,
            )
        )
    return items


def _unsigned_match(report: bounces.Report) -> bounces.Match | None:
    """Without a secret there is no VERP: only the Message-ID and header fallbacks are left."""
    match = bounces.match_event(report, b"\x00" * 32)
    return match if match is not None and match.via != "verp" else None


def process_mailbox(
    mailbox: Mailbox,
    conn: psycopg.Connection[Any],
    settings: FeedbackSettings,
    *,
    max_batches: int | None = None,
) -> InboxCounts:
    """Read the mailbox until it is empty (or ``max_batches``), applying each batch as it goes."""
    counts = InboxCounts()
    batches = 0
    while max_batches is None or batches < max_batches:
        messages = mailbox.fetch(settings.bounce_batch)
        if not messages:
            break
        batches += 1
        _process_batch(mailbox, conn, settings, messages, counts)
        log.info(
            "Bounce mailbox: %d mails read so far (%d handled, %d set aside, %d unmatched)",
            counts.read,
            counts.handled,
            counts.set_aside,
            counts.unmatched,
        )
    return counts


def _process_batch(
    mailbox: Mailbox,
    conn: psycopg.Connection[Any],
    settings: FeedbackSettings,
    messages: Sequence[InboundMessage],
    counts: InboxCounts,
) -> None:
    items: list[Feedback] = []
    handled: list[str] = []
    aside: list[str] = []
    for message in messages:
        counts.read += 1
        if message.too_large or message.raw is None:
            counts.unreadable += 1
            aside.append(message.uid)
            continue
        report = bounces.parse(
            message.raw,
            max_bytes=settings.bounce_max_bytes,
            max_recipients=settings.bounce_max_recipients,
        )
        counts.by_kind[report.kind.value] = counts.by_kind.get(report.kind.value, 0) + 1
        found = feedback_of(report, settings.key) if report.kind != bounces.Kind.UNKNOWN else []
        if not found:
            counts.unmatched += report.kind != bounces.Kind.UNKNOWN
            counts.unreadable += report.kind == bounces.Kind.UNKNOWN
            aside.append(message.uid)
            continue
        items.extend(found)
        handled.append(message.uid)
    if items:
        applied = apply_feedback(conn, items, qualify=qualifier(conn), rules=settings)
        _add(counts.feedback, applied)
    # Only now that the batch is committed: a crash before this leaves every mail to be read again.
    if handled:
        mailbox.done(handled)
    if aside:
        mailbox.set_aside(aside)
    counts.handled += len(handled)
    counts.set_aside += len(aside)


def _add(total: FeedbackCounts, batch: FeedbackCounts) -> None:
    for name in ("received", "duplicates", "applied", "unmatched", "failed", "quarantined", "denylisted"):
        setattr(total, name, getattr(total, name) + getattr(batch, name))
    total.unqualified += batch.unqualified
    total.by_kind.update(batch.by_kind)
