"""SMS receipts: read the SMSC's delivery receipts for a bounded lifetime and apply them in batches.

The long-lived task of ``smsReceipts``. Each batch is applied in one transaction
(:func:`messagecenter.feedback.smpp.apply_receipts`) and only then acknowledged to the SMSC, as
Campaign does: a receipt read but not stored (the task stopped, the database failed) is answered
with a temporary error or not at all, and the SMSC delivers it again. Applying one twice changes
nothing (each receipt's id and status is its provider event key).

A receipt often comes before the sender has stored its message's delivery log (the SMSC answers
the submit, then sends the receipt at once, while the log waits for its batch's commit): it is kept
unmatched, and matched again here every ``REMATCH_SECONDS`` for ``REMATCH_FOR_SECONDS``, so the
delivery shows within seconds rather than at ``updateEventsStatus``'s next run, which matches
whatever is left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from messagecenter.core.settings import FeedbackSettings
from messagecenter.delivery.smpp import SmppReceiver
from messagecenter.feedback.apply import rematch_unmatched
from messagecenter.feedback.rules import qualifier
from messagecenter.feedback.smpp import apply_receipts

log = logging.getLogger(__name__)

BATCH = 200  # receipts per transaction
WAIT_SECONDS = 0.5  # how long a batch waits for its first receipt: also how soon a stop is seen
REMATCH_SECONDS = 1.0  # how often receipts kept unmatched are matched again
REMATCH_FOR_SECONDS = 30.0  # for how long after the last one kept (then updateEventsStatus does it)


@dataclass
class ReceiptCounts:
    received: int = 0
    applied: int = 0
    unmatched: int = 0
    rematched: int = 0  # kept unmatched, then applied once their delivery log was there
    duplicates: int = 0
    batches: int = 0

    def summary(self) -> dict[str, int]:
        return dict(vars(self))


def drain_receipts(
    receiver: SmppReceiver,
    connect: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
    rules: FeedbackSettings,
    *,
    lifetime_seconds: float,
    stop: threading.Event | None = None,
    batch: int = BATCH,
) -> ReceiptCounts:
    """Apply receipts as they come until ``lifetime_seconds`` have passed or ``stop`` is set.

    :param connect: opens an autocommit connection to the execution database.
    :raises psycopg.Error: the database failed; the batch in hand was refused (sent again later).
    """
    counts = ReceiptCounts()
    end = time.monotonic() + lifetime_seconds
    kept_at = last_rematch = -REMATCH_FOR_SECONDS  # when a receipt was last kept unmatched, last rematch
    with receiver, connect() as conn:
        while not (stop is not None and stop.is_set()):
            now = time.monotonic()
            left = end - now
            if left <= 0:
                break
            if now - kept_at < REMATCH_FOR_SECONDS and now - last_rematch >= REMATCH_SECONDS:
                last_rematch = now
                counts.rematched += rematch_unmatched(conn, qualify=qualifier(conn), rules=rules).applied
            items = receiver.next_batch(batch, min(WAIT_SECONDS, left))
            if not items:
                continue
            try:
                applied = apply_receipts(conn, [i.receipt for i in items], rules)
            except Exception:
                receiver.acknowledge(items, stored=False)
                raise
            receiver.acknowledge(items)
            counts.received += len(items)
            counts.applied += applied.applied
            counts.unmatched += applied.unmatched
            if applied.unmatched:
                kept_at = time.monotonic()
            counts.duplicates += applied.duplicates
            counts.batches += 1
    log.info(
        "SMS receipts: %d received in %d batches, %d applied, %d kept unmatched (%d of them applied "
        "since), %d duplicates",
        counts.received,
        counts.batches,
        counts.applied,
        counts.unmatched,
        counts.rematched,
        counts.duplicates,
    )
    return counts
