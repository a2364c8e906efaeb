"""Split: claim a queue's due pending events in bounded chunks and describe them as shards.

The split leases what it claims (``claimed_until``), so the events of a split whose link never ran
come back when the lease ends.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import psycopg

from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import Queue
from messagecenter.db.queries import fetch_value, query
from messagecenter.execution.shards import Shard

log = logging.getLogger(__name__)


def _ranges(min_id: int, max_id: int, parts: int) -> Iterator[tuple[int, int]]:
    """Split ``min_id..max_id`` into ``parts`` contiguous ranges of about equal width."""
    width = (max_id - min_id + 1) / parts
    bounds = [min_id + round(width * i) for i in range(parts)] + [max_id + 1]
    for low, high in itertools.pairwise(bounds):
        if high > low:
            yield low, high - 1


def split_queue(
    conn: psycopg.Connection[Any],
    queue: Queue,
    settings: ProcessingSettings,
    *,
    quiet_when_idle: bool = False,
) -> list[Shard]:
    """Claim due pending events of ``queue`` in bounded chunks and describe them as shards.

    Returns shards for the claimed events (grouped by event type and channel, each group cut into
    at most ``settings.parallelism`` id ranges) plus one retry shard per (event type, channel)
    with linked events due again. The number of shards does not grow with the volume.

    :param quiet_when_idle: log a split that found nothing at DEBUG only (the real-time drain splits
        at every wake-up and summarises its idle passes instead).
    """
    batch_id = fetch_value(conn, query("next_batch_id"))
    groups: dict[tuple[str, int], list[int]] = {}  # (type, channel) -> [count, min, max]
    claimed = 0
    while claimed < settings.max_events_per_run:
        limit = min(settings.claim_chunk, settings.max_events_per_run - claimed)
        with conn.transaction():
            rows = conn.execute(
                query("claim_pending", queue),
                {"limit": limit, "batch_id": batch_id, "lease": settings.lease_seconds},
            ).fetchall()
        chunk = sum(r[2] for r in rows)
        claimed += chunk
        for event_type, channel, n, low, high in rows:
            g = groups.setdefault((event_type, channel), [0, low, high])
            g[0], g[1], g[2] = g[0] + n, min(g[1], low), max(g[2], high)
        if chunk < limit:
            break
    shards = []
    for (event_type, channel), (n, low, high) in sorted(groups.items()):
        parts = max(1, min(settings.parallelism, n // max(settings.min_shard_size, 1)))
        for lo, hi in _ranges(low, high, parts):
            shards.append(Shard(queue, event_type, channel, batch_id, lo, hi, n // parts))
    claimed_groups = set(groups)
    for event_type, channel, n in conn.execute(query("due_retries", queue)).fetchall():
        if (event_type, channel) not in claimed_groups:
            shards.append(Shard(queue, event_type, channel, None, -(2**63), 2**63 - 1, n))
    conn.commit()
    level = logging.DEBUG if quiet_when_idle and not shards else logging.INFO
    log.log(
        level, "Split %s: claimed %s events into %s shards (batch %s)", queue, claimed, len(shards), batch_id
    )
    return shards
