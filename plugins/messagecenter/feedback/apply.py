"""Apply delivery feedback to the execution database: delivery logs, qualification counts, quarantine.

Every source (the bounce mailbox, provider webhooks, SMS receipts) hands :func:`apply_feedback` the
same :class:`Feedback` items, so one code path decides what a bounce, a complaint or a receipt does:

* a provider event seen before (its ``event_key``) changes nothing (replays, retried webhooks);
* the item finds its delivery log by event id (VERP, Message-ID) or by the provider's message id;
  one that finds none is kept in ``mc.feedback_unmatched`` (a receipt may come before the submit
  answer) and matched again later, never dropped, and never quarantines anybody: the address that
  is quarantined is always the one of our own log, never one the feedback claims;
* its text is qualified by the rules (type + reason) and counted in ``mc.feedback_message``;
* the log changes once (``apply_log_feedback``): Sent -> Failed is final, a late "delivered" or a
  repeated callback changes nothing; ``updateEventsStatus`` then copies the new status;
* the address's quarantine follows Campaign's rules (``record_address_feedback``).

All of it in one transaction per batch, set-based (one statement per step, not per item).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from messagecenter.core.settings import FeedbackSettings
from messagecenter.db.queries import query
from messagecenter.feedback.types import FailureReason, FailureType, Qualification

log = logging.getLogger(__name__)

Kind = Literal["delivered", "failed", "deferred", "complaint", "unsubscribe", "ignored"]
Qualifier = Callable[[str, "str | None"], Qualification]
MAX_TEXT = 2_000
MAX_ID = 500  # longer ids are kept as their hash
# What one log keeps when a batch holds several items for it: the most decisive.
_RANK = {"failed": 5, "complaint": 4, "unsubscribe": 3, "delivered": 2, "deferred": 1, "ignored": 0}
# Quarantine statuses (mc.quarantine.status), Campaign's names.
VALID, WITH_ERRORS, QUARANTINE, DENYLISTED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Feedback:
    """One piece of news about a sent message, whatever its source.

    :param source: where it came from (``mailbox``, ``ses``, ``sendgrid``, ``smpp``...): the
        namespace of ``event_key``.
    :param kind: what happened to the message.
    :param event_id: our event id, when the feedback carries it (VERP, Message-ID, echoed metadata).
    :param message_id: the provider's message id stored at send.
    :param text: the provider's or MTA's text (diagnostic code, error code...), qualified by the rules.
    :param status: an RFC 3463 status (``5.1.1``) when there is one: a hint for qualification.
    :param severity: ``permanent`` / ``temporary`` when the provider says so.
    :param event_key: the provider's id of this feedback event, to apply it once.
    :param at: when it happened (default: now).
    :param expect_address: the address the feedback is about, when it was matched by evidence nobody
        signed (a Message-ID, a header): the log must be for that address, or it is not this one.
    """

    source: str
    kind: Kind
    event_id: int | None = None
    message_id: str | None = None
    text: str | None = None
    status: str | None = None
    severity: Literal["permanent", "temporary"] | None = None
    event_key: str | None = None
    at: datetime | None = None
    expect_address: str | None = None


@dataclass
class FeedbackCounts:
    """What a batch did, for the task log and the API answer."""

    received: int = 0
    duplicates: int = 0
    applied: int = 0
    unmatched: int = 0
    failed: int = 0
    quarantined: int = 0
    denylisted: int = 0
    unqualified: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "duplicates": self.duplicates,
            "applied": self.applied,
            "unmatched": self.unmatched,
            "failed": self.failed,
            "quarantined": self.quarantined,
            "denylisted": self.denylisted,
            "unqualified": self.unqualified,
        }


@dataclass(frozen=True, slots=True)
class _Log:
    id: int
    event_id: int
    channel: int
    address: str | None
    status: int


def _bounded(item: Feedback) -> Feedback:
    """Ids as anyone may send them (a bounce's Message-ID, a provider's key) fit an index entry."""
    return replace(item, message_id=_short(item.message_id), event_key=_short(item.event_key))


def _short(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def _fresh(
    conn: psycopg.Connection[Any], items: Sequence[Feedback], counts: FeedbackCounts
) -> list[Feedback]:
    """Drop the provider events applied before (and repeats inside the batch)."""
    by_source: dict[str, list[str]] = {}
    for item in items:
        if item.event_key:
            by_source.setdefault(item.source, []).append(item.event_key)
    new: set[tuple[str, str]] = set()
    for source, keys in by_source.items():
        rows = conn.execute(
            query("mark_feedback_seen"), {"provider": source, "keys": list(dict.fromkeys(keys))}
        )
        new.update((source, key) for (key,) in rows.fetchall())
    fresh = []
    for item in items:
        key = (item.source, item.event_key or "")
        if item.event_key is None or key in new:
            new.discard(key)  # a second copy in the same batch is a duplicate too
            fresh.append(item)
        else:
            counts.duplicates += 1
    return fresh


def _logs(
    conn: psycopg.Connection[Any], items: Sequence[Feedback]
) -> tuple[dict[int, _Log], dict[str, _Log]]:
    event_ids = sorted({i.event_id for i in items if i.event_id is not None})
    message_ids = sorted({i.message_id for i in items if i.event_id is None and i.message_id})
    by_event: dict[int, _Log] = {}
    by_message: dict[str, _Log] = {}
    if event_ids:
        for row in conn.execute(query("logs_by_event"), {"ids": event_ids}):
            by_event[row[1]] = _Log(row[0], row[1], row[2], row[3], row[4])
    if message_ids:
        # Providers quote a Message-ID without its angle brackets; the log keeps it as sent.
        bracketed = {f"<{m}>": m for m in message_ids if not m.startswith("<")}
        for row in conn.execute(query("logs_by_message_id"), {"ids": [*message_ids, *bracketed]}):
            by_message[bracketed.get(row[6], row[6])] = _Log(row[0], row[1], row[2], row[3], row[4])
    return by_event, by_message


def _qualify(item: Feedback, qualify: Qualifier) -> Qualification | None:
    """Type and reason of a failure; ``None`` for feedback that is not one."""
    if item.kind not in ("failed", "deferred", "ignored"):
        return None
    text = (item.text or item.status or item.kind)[:MAX_TEXT]
    found = qualify(text, item.status)
    if item.kind == "ignored" and found.type != FailureType.IGNORED:
        return Qualification(FailureType.IGNORED, found.reason, found.text, found.pattern)
    if not found.qualified and item.severity is not None:
        # No rule knew the text: the provider's own word decides the type; the text stays unqualified.
        kind = FailureType.HARD if item.severity == "permanent" else FailureType.SOFT
        return Qualification(kind, FailureReason.NOT_DEFINED, found.text, None)
    return found


def _outcome(item: Feedback, found: Qualification | None) -> str:
    """What the log records. A failure the provider reports stays a failure whatever its type (an
    ignored type only spares the address's quarantine); other news the rules call ignored, such
    as an auto-reply or a delay warning, changes no status."""
    if item.kind != "failed" and found is not None and found.type == FailureType.IGNORED:
        return "ignored"
    return item.kind


def apply_feedback(
    conn: psycopg.Connection[Any],
    items: Iterable[Feedback],
    *,
    qualify: Qualifier,
    rules: FeedbackSettings,
) -> FeedbackCounts:
    """Apply one batch of feedback in one transaction; see the module docstring for what it does."""
    batch = [_bounded(item) for item in items]
    counts = FeedbackCounts(received=len(batch))
    now = datetime.now(UTC)
    with conn.transaction():
        fresh = _fresh(conn, batch, counts)
        by_event, by_message = _logs(conn, fresh)
        per_log: dict[int, tuple[Feedback, Qualification | None, _Log]] = {}
        unmatched: list[tuple[Feedback, Qualification | None]] = []
        texts: dict[str, list[Any]] = {}
        for item in fresh:
            counts.by_kind[item.kind] += 1
            found = _qualify(item, qualify)
            if found is not None:
                entry = texts.setdefault(found.text, [item.text or found.text, found.type, found.reason, 0])
                entry[3] += 1
                counts.unqualified += not found.qualified
            target = by_event.get(item.event_id) if item.event_id is not None else None
            if target is None and item.message_id:
                target = by_message.get(item.message_id)
            if (
                target is not None
                and item.expect_address is not None
                and (target.address or "").lower() != item.expect_address.lower()
            ):
                target = None  # an unsigned match names another recipient: not this log
            if target is None:
                unmatched.append((item, found))
                continue
            kept = per_log.get(target.id)
            if kept is None or _RANK[_outcome(item, found)] > _RANK[_outcome(kept[0], kept[1])]:
                per_log[target.id] = (item, found, target)
        counts.unmatched = len(unmatched)
        changed = _write_logs(conn, per_log, now)
        counts.applied = len(changed)
        counts.failed = sum(1 for _, status in changed.items() if status == 4)
        _quarantine(conn, per_log, changed, rules, now, counts)
        _count_texts(conn, texts)
        _keep_unmatched(conn, unmatched)
    log.info(
        "Feedback: %d received, %d duplicates, %d applied, %d unmatched, %d failed after the send, "
        "%d quarantined, %d denylisted, %d unqualified",
        counts.received,
        counts.duplicates,
        counts.applied,
        counts.unmatched,
        counts.failed,
        counts.quarantined,
        counts.denylisted,
        counts.unqualified,
    )
    return counts


def _write_logs(
    conn: psycopg.Connection[Any],
    per_log: dict[int, tuple[Feedback, Qualification | None, _Log]],
    now: datetime,
) -> dict[int, int]:
    """Change the logs; returns log id -> its status now, for the logs that changed."""
    if not per_log:
        return {}
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "log_id",
            "outcome",
            "failure_type",
            "failure_reason",
            "feedback_text",
            "feedback_key",
            "at",
        )
    }
    for log_id, (item, found, _) in per_log.items():
        columns["log_id"].append(log_id)
        columns["outcome"].append(_outcome(item, found) if item.kind != "unsubscribe" else "complaint")
        columns["failure_type"].append(int(found.type) if found else None)
        columns["failure_reason"].append(int(found.reason) if found else None)
        columns["feedback_text"].append(_raw_text(item))
        columns["feedback_key"].append(found.text if found else None)
        columns["at"].append(item.at or now)
    rows = conn.execute(query("apply_log_feedback"), columns).fetchall()
    return {row[0]: row[2] for row in rows}


def _quarantine(
    conn: psycopg.Connection[Any],
    per_log: dict[int, tuple[Feedback, Qualification | None, _Log]],
    changed: dict[int, int],
    rules: FeedbackSettings,
    now: datetime,
    counts: FeedbackCounts,
) -> None:
    """Campaign's quarantine rules for the addresses of the logs this batch changed."""
    strongest: dict[tuple[int, str], tuple[int, Feedback, Qualification | None]] = {}
    delivered: dict[int, list[str]] = {}
    for log_id, (item, found, target) in per_log.items():
        if log_id not in changed or not target.address:
            continue
        key = (target.channel, target.address)
        if item.kind in ("complaint", "unsubscribe"):
            status = DENYLISTED
        elif item.kind == "failed" and found is not None and found.type == FailureType.HARD:
            status = QUARANTINE
        elif item.kind == "failed" and found is not None and found.type == FailureType.SOFT:
            status = WITH_ERRORS
        elif item.kind == "delivered":
            delivered.setdefault(target.channel, []).append(target.address)
            continue
        else:
            continue
        if key not in strongest or status > strongest[key][0]:
            strongest[key] = (status, item, found)
    if strongest:
        columns: dict[str, list[Any]] = {
            k: [] for k in ("channel", "address", "status", "failure_reason", "reason", "at", "source")
        }
        for (channel, address), (status, item, found) in strongest.items():
            columns["channel"].append(channel)
            columns["address"].append(address)
            columns["status"].append(status)
            reason = FailureReason.DENYLISTED if status == DENYLISTED else (found.reason if found else None)
            columns["failure_reason"].append(int(reason) if reason is not None else None)
            columns["reason"].append(_reason_text(item, found))
            columns["at"].append(item.at or now)
            columns["source"].append(f"{item.kind}:{item.source}")
            counts.denylisted += status == DENYLISTED
        conn.execute(
            query("record_address_feedback"),
            {
                **columns,
                "max_errors": rules.max_errors,
                "significant_seconds": rules.significant_error.total_seconds(),
            },
        )
        counts.quarantined = _count_in_quarantine(conn, list(strongest))
    for channel, addresses in delivered.items():
        conn.execute(query("clear_with_errors"), {"channel": channel, "addresses": addresses})


def _count_in_quarantine(conn: psycopg.Connection[Any], keys: list[tuple[int, str]]) -> int:
    total = 0
    for channel in {c for c, _ in keys}:
        addresses = [a for c, a in keys if c == channel]
        # Planned for these addresses each time: a prepared (generic) plan made while the table was
        # small filters every row of the channel against the whole list.
        params = {"channel": channel, "addresses": addresses}
        rows = conn.execute(query("quarantined"), params, prepare=False).fetchall()
        total += sum(1 for _, status in rows if status == QUARANTINE)
    return total


def _raw_text(item: Feedback) -> str:
    """The provider's words as kept on the log, with the DSN status when the words lack it."""
    text = item.text or item.kind
    if item.status and item.status not in text:
        text = f"{item.status} {text}"
    return text[:MAX_TEXT]


def _reason_text(item: Feedback, found: Qualification | None) -> str:
    if item.kind == "complaint":
        return f"complaint ({item.source})"
    if item.kind == "unsubscribe":
        return f"unsubscribed ({item.source})"
    label = found.reason.label if found else item.kind
    return f"{label}: {(item.text or '')[:200]}".rstrip(": ")


def _count_texts(conn: psycopg.Connection[Any], texts: dict[str, list[Any]]) -> None:
    if not texts:
        return
    keys = sorted(texts)
    conn.execute(
        query("count_feedback_messages"),
        {
            "feedback_key": keys,
            "first_text": [str(texts[k][0])[:MAX_TEXT] for k in keys],
            "failure_type": [int(texts[k][1]) for k in keys],
            "failure_reason": [int(texts[k][2]) for k in keys],
            "occurrences": [texts[k][3] for k in keys],
        },
    )


def _keep_unmatched(
    conn: psycopg.Connection[Any], unmatched: list[tuple[Feedback, Qualification | None]]
) -> None:
    if not unmatched:
        return
    conn.execute(
        query("insert_unmatched_feedback"),
        {
            "provider": [i.source for i, _ in unmatched],
            "message_id": [i.message_id or (str(i.event_id) if i.event_id else None) for i, _ in unmatched],
            "address": [None for _ in unmatched],
            "kind": [i.kind for i, _ in unmatched],
            "failure_type": [int(q.type) if q else None for _, q in unmatched],
            "failure_reason": [int(q.reason) if q else None for _, q in unmatched],
            "feedback_text": [(i.text or "")[:MAX_TEXT] for i, _ in unmatched],
            "feedback_key": [q.text if q else None for _, q in unmatched],
        },
    )


def rematch_unmatched(
    conn: psycopg.Connection[Any], *, qualify: Qualifier, rules: FeedbackSettings
) -> FeedbackCounts:
    """Apply the kept feedback whose delivery log exists now (a receipt that beat the submit answer)."""
    with conn.transaction():
        rows = conn.execute(query("take_matchable_unmatched")).fetchall()
        items = [
            Feedback(source=row[0], kind=row[3], message_id=row[1], text=row[6] or None, at=row[8])
            for row in rows
        ]
        return apply_feedback(conn, items, qualify=qualify, rules=rules)


def qualify_send_failures(
    conn: psycopg.Connection[Any], *, qualify: Qualifier, rules: FeedbackSettings, limit: int = 10_000
) -> int:
    """Qualify the synchronous refusals of the latest sends with the same rules as bounces.

    A provider's answer (an SMTP 550, an HTTP error) is qualified and quarantines its address like a
    bounce would; a failure of ours (a template error) says nothing about the address and is marked
    ignored. Runs in ``updateEventsStatus``, off the delivery hot path.
    """
    with conn.transaction():
        rows = conn.execute(query("unqualified_send_failures"), {"limit": limit}).fetchall()
        if not rows:
            return 0
        columns: dict[str, list[Any]] = {
            k: [] for k in ("log_id", "failure_type", "failure_reason", "feedback_key")
        }
        per_address: dict[tuple[int, str], tuple[int, Qualification, datetime, str]] = {}
        texts: dict[str, list[Any]] = {}
        for log_id, _event_id, channel, address, text, from_provider, created in rows:
            if from_provider and text:
                found = qualify(text[:MAX_TEXT], None)
                entry = texts.setdefault(found.text, [text, found.type, found.reason, 0])
                entry[3] += 1
            else:
                found = Qualification(FailureType.IGNORED, FailureReason.NOT_DEFINED, "", None)
            columns["log_id"].append(log_id)
            columns["failure_type"].append(int(found.type))
            columns["failure_reason"].append(int(found.reason))
            columns["feedback_key"].append(found.text or None)
            status = {FailureType.HARD: QUARANTINE, FailureType.SOFT: WITH_ERRORS}.get(found.type)
            if status is not None and address:
                key = (channel, address)
                if key not in per_address or status > per_address[key][0]:
                    per_address[key] = (status, found, created, text or "")
        conn.execute(query("qualify_send_failures"), columns)
        _count_texts(conn, texts)
        if per_address:
            keys = list(per_address)
            conn.execute(
                query("record_address_feedback"),
                {
                    "channel": [c for c, _ in keys],
                    "address": [a for _, a in keys],
                    "status": [per_address[k][0] for k in keys],
                    "failure_reason": [int(per_address[k][1].reason) for k in keys],
                    "reason": [f"{per_address[k][1].reason.label}: {per_address[k][3][:200]}" for k in keys],
                    "at": [per_address[k][2] for k in keys],
                    "source": ["refused at send" for _ in keys],
                    "max_errors": rules.max_errors,
                    "significant_seconds": rules.significant_error.total_seconds(),
                },
            )
    log.info("Qualified %d send failures (%d addresses counted)", len(rows), len(per_address))
    return len(rows)
