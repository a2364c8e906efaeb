"""SMS status reports (SMPP ``deliver_sm`` receipts): read them and turn them into feedback.

A receipt is a ``deliver_sm`` whose ``esm_class`` has the receipt bit (0x04); its short message
follows SMPP 3.4 appendix B::

    id:1234567890 sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:Hi

and it may carry the ``receipted_message_id`` (0x001E) and ``message_state`` (0x0427) TLVs, which
win over the text when present. The fields are read only before ``text:``: the message's first
characters follow it, and an id or a status typed by whoever wrote the SMS must not be taken for
the receipt's (Campaign's "partial denial of service" warning about loose id expressions).

Only final states change a log: ``DELIVRD`` means delivered; ``UNDELIV``, ``REJECTD``, ``EXPIRED`` and
``DELETED`` a failure; ``ACCEPTD``, ``ENROUTE`` and ``UNKNOWN`` are intermediate and ignored. A
failure's text is ``SR <stat> <err>|MESSAGE=<the receipt up to text:>``, qualified by the feedback
rules like any other (no seeded rule knows SMSC error codes, so a failure counts as soft until an
operator adds rules, as in Campaign). Ids are compared as the SMSC wrote them; an SMSC whose receipts
write ids in another base than its ``submit_sm_resp`` is not matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from messagecenter.core.settings import FeedbackSettings
from messagecenter.feedback.apply import Feedback, FeedbackCounts, Kind, apply_feedback
from messagecenter.feedback.rules import qualifier

SOURCE = "smpp"
ESM_CLASS_RECEIPT = 0x04  # esm_class bits 2-5 = 0001: SMSC delivery receipt
ESM_CLASS_TYPE_MASK = 0x3C
MAX_RAW = 1_000
MAX_ID = 65  # receipted_message_id holds at most 64 characters and its NUL

# message_state TLV values (SMPP 3.4 section 5.2.28) and the stat word each stands for.
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
KINDS: dict[str, Kind] = {
    "DELIVRD": "delivered",
    "UNDELIV": "failed",
    "REJECTD": "failed",
    "EXPIRED": "failed",
    "DELETED": "failed",
}

_FIELD = re.compile(r"(?:^|\s)(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.IGNORECASE)
_TEXT = re.compile(r"(?:^|\s)text:", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One status report, as read from its ``deliver_sm``.

    :param message_id: the SMSC's id of the message it reports on (``submit_sm_resp``'s).
    :param stat: ``DELIVRD``, ``UNDELIV``... (upper case), or ``None`` when it says none.
    :param err: the network-specific error code, as written.
    :param raw: the receipt's text up to its ``text:`` field.
    """

    message_id: str
    stat: str | None
    err: str | None
    raw: str

    @property
    def final(self) -> bool:
        return self.stat in KINDS


def is_receipt(esm_class: int) -> bool:
    """Whether a ``deliver_sm`` with this ``esm_class`` is a delivery receipt (not a mobile's SMS)."""
    return esm_class & ESM_CLASS_TYPE_MASK == ESM_CLASS_RECEIPT


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("latin-1")
    return value.split("\0", 1)[0]


def parse_receipt(
    short_message: bytes | str | None,
    *,
    receipted_message_id: bytes | str | None = None,
    message_state: int | None = None,
) -> Receipt | None:
    """The receipt in a ``deliver_sm``'s fields, or ``None`` when it names no message."""
    body = _text(short_message)
    end = _TEXT.search(body)
    head = body[: end.start()] if end else body
    fields: dict[str, str] = {}
    for name, value in _FIELD.findall(head):
        fields.setdefault(name.lower(), value)
    message_id = _text(receipted_message_id).strip() or fields.get("id", "")
    stat = fields.get("stat", "").upper() or MESSAGE_STATES.get(message_state or 0)
    if message_state in MESSAGE_STATES and receipted_message_id:
        stat = MESSAGE_STATES[message_state]  # the TLVs are the structured form: they win
    if not message_id or len(message_id) >= MAX_ID or not message_id.isprintable():
        return None
    return Receipt(message_id, stat or None, fields.get("err") or None, head.strip()[:MAX_RAW])


def receipt_feedback(receipt: Receipt) -> Feedback | None:
    """The feedback a final receipt gives its delivery log; ``None`` for an intermediate one."""
    kind = KINDS.get(receipt.stat or "")
    if kind is None:
        return None
    return Feedback(
        source=SOURCE,
        kind=kind,
        message_id=receipt.message_id,
        text=f"SR {receipt.stat} {receipt.err or '000'}|MESSAGE={receipt.raw}",
        event_key=f"{receipt.message_id}:{receipt.stat}",
    )


def apply_receipts(
    conn: psycopg.Connection[Any], receipts: Iterable[Receipt], rules: FeedbackSettings
) -> FeedbackCounts:
    """Apply a batch of receipts in one transaction (intermediate ones are skipped): a receipt whose
    message id no log holds yet is kept and matched again by ``updateEventsStatus``."""
    items = [f for f in map(receipt_feedback, receipts) if f is not None]
    if not items:
        return FeedbackCounts()
    return apply_feedback(conn, items, qualify=qualifier(conn), rules=rules)
