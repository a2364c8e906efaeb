"""The qualification rules operators edit, on top of the seeded ones, and the qualifier built from them.

Operators' rules live in ``mc.feedback_rule`` and are tried first (by their priority), then the
seeded rules shipped with the code (:data:`~messagecenter.feedback.qualification.SEED_RULES`): an
operator changes what a text means by adding a rule, never by editing code. Changing a rule
re-qualifies the texts already counted that it now matches (``mc.feedback_message``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from messagecenter.db.queries import query
from messagecenter.feedback.qualification import SEED_RULES, Rule, qualify, rules_from_rows
from messagecenter.feedback.types import FailureReason, FailureType, Qualification

Qualifier = Callable[[str, "str | None"], Qualification]


@dataclass(frozen=True)
class StoredRule:
    """A rule as the CLI and the page list it: operators' (with an id) and seeded ones (id ``None``)."""

    id: int | None
    pattern: str
    type: FailureType
    reason: FailureReason
    priority: int
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "origin": "operator" if self.id is not None else "seed",
            "pattern": self.pattern,
            "type": self.type.label,
            "reason": self.reason.label,
            "priority": self.priority,
            "note": self.note,
        }


def operator_rules(conn: psycopg.Connection[Any]) -> list[StoredRule]:
    rows = conn.execute(query("list_feedback_rules")).fetchall()
    return [StoredRule(r[0], r[1], FailureType(r[2]), FailureReason(r[3]), r[4], r[5]) for r in rows]


def all_rules(conn: psycopg.Connection[Any]) -> list[StoredRule]:
    """Every rule in the order they are tried: operators' first, then the seeded ones."""
    seeded = [StoredRule(None, r.pattern, r.type, r.reason, r.priority) for r in SEED_RULES]
    return operator_rules(conn) + seeded


def qualifier(conn: psycopg.Connection[Any]) -> Qualifier:
    """Qualify texts with the rules as they are now (read once: one call per batch)."""
    stored = rules_from_rows((r.pattern, r.type, r.reason, r.priority) for r in operator_rules(conn))
    # Operators' rules win over the seeded ones whatever their priority numbers.
    rules = [Rule(r.pattern, r.type, r.reason, r.priority - 1_000_000) for r in stored] + list(SEED_RULES)

    def qualify_text(text: str, status: str | None) -> Qualification:
        return qualify(text, rules, status)

    return qualify_text


def save_rule(
    conn: psycopg.Connection[Any],
    pattern: str,
    type_: FailureType,
    reason: FailureReason,
    *,
    priority: int = 0,
    note: str | None = None,
) -> int:
    """Add a rule, or change the one with this pattern; the texts it matches take its qualification."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {pattern!r} ({exc})") from None
    params = {"pattern": pattern, "failure_type": int(type_), "failure_reason": int(reason)}
    with conn.transaction():
        rule_id = conn.execute(query("upsert_feedback_rule"), {**params, "priority": priority, "note": note})
        found = rule_id.fetchone()
        assert found is not None
        texts = conn.execute(query("list_feedback_messages"), {"unqualified": False, "limit": 1_000_000})
        keys = [row[0] for row in texts if compiled.search(row[0])]
        if keys:
            conn.execute(query("requalify_feedback_message"), {**params, "keys": keys})
    return int(found[0])


def delete_rule(conn: psycopg.Connection[Any], rule_id: int) -> bool:
    return conn.execute(query("delete_feedback_rule"), {"id": rule_id}).rowcount > 0


def unqualified_texts(conn: psycopg.Connection[Any], limit: int = 50) -> list[dict[str, Any]]:
    """The texts no rule qualified, most frequent first: what an operator should write rules for."""
    rows = conn.execute(query("list_feedback_messages"), {"unqualified": True, "limit": limit})
    return [
        {"text": r[0], "first_text": r[1], "occurrences": r[4], "last_seen": r[6].isoformat()} for r in rows
    ]


def feedback_texts(
    conn: psycopg.Connection[Any], *, unqualified: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """The qualification table as operators read it, most frequent first (only the texts no rule
    qualified when ``unqualified``)."""
    rows = conn.execute(query("list_feedback_messages"), {"unqualified": unqualified, "limit": limit})
    return [
        {
            "text": r[0],
            "first_text": r[1],
            "type": FailureType(r[2]).label if r[2] is not None else None,
            "reason": _reason_label(r[3]),
            "occurrences": r[4],
            "first_seen": r[5].isoformat(),
            "last_seen": r[6].isoformat(),
        }
        for r in rows
    ]


def _reason_label(code: int) -> str:
    try:
        return FailureReason(code).label
    except ValueError:
        return str(code)


def parse_type(value: str) -> FailureType:
    """A failure type by name (``hard``, ``soft``, ``ignored``) or code."""
    text = value.strip()
    try:
        return FailureType(int(text)) if text.isdigit() else FailureType[text.upper()]
    except (KeyError, ValueError):
        names = ", ".join(t.name.lower() for t in FailureType)
        raise ValueError(f"unknown failure type {value!r}; use one of {names}") from None


def parse_reason(value: str) -> FailureReason:
    """A failure reason by Campaign's code (``1``), label (``User unknown``) or name (``user_unknown``)."""
    text = value.strip()
    if text.isdigit():
        try:
            return FailureReason(int(text))
        except ValueError:
            pass
    else:
        wanted = text.lower().replace("-", " ").replace("_", " ")
        for reason in FailureReason:
            if wanted in (reason.name.lower().replace("_", " "), reason.label.lower().replace("-", " ")):
                return reason
    names = ", ".join(f"{r.value} {r.name.lower()}" for r in FailureReason)
    raise ValueError(f"unknown failure reason {value!r}; use a code or a name: {names}")
