"""SMS receipts: read the SMSC's delivery receipts for a bounded lifetime and apply them in batches.

The long-lived task of ``smsReceipts``. Each batch is applied in one transaction
(:func:`messagecenter.feedback.smpp.apply_receipts`) and only then acknowledged to the SMSC, as
Campaign does: a receipt read but not stored (the task stopped, the database failed) is answered
with a temporary error or not at all, and the SMSC delivers it again. Applying one twice changes
nothing (each receipt's id and status is its provider event key).
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
from messagecenter.feedback.smpp import apply_receipts

log = logging.getLogger(__name__)

BATCH = 200  # receipts per transaction
WAIT_SECONDS = 0.5  # how long a batch waits for its first receipt: also how soon a stop is seen


@dataclass
class ReceiptCounts:
    received: int = 0
    applied: int = 0
    unmatched: int = 0
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
    with receiver, connect() as conn:
        while not (stop is not None and stop.is_set()):
            left = end - time.monotonic()
            if left <= 0:
                break
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
            counts.duplicates += applied.duplicates
            counts.batches += 1
    log.info(
        "SMS receipts: %d received in %d batches, %d applied, %d kept unmatched, %d duplicates",
        counts.received,
        counts.batches,
        counts.applied,
        counts.unmatched,
        counts.duplicates,
    )
    return counts
