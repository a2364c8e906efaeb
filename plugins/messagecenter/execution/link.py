"""Link: route a shard's claimed events to the version in use of their template, in one statement.

The routing rule is the ``current_templates`` statement (``templates.publishing`` runs the same).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import psycopg

from messagecenter.core.types import Channel
from messagecenter.db.queries import query
from messagecenter.execution.shards import Counts, Shard

log = logging.getLogger(__name__)


def link_templates(conn: psycopg.Connection[Any], shard: Shard) -> Counts:
    """Link the shard's claimed events to the latest published template with one statement:
    Pending delivery (1) when one exists, else Event not taken into account (5)."""
    counts = Counts()
    if shard.batch_id is None:  # a retry shard: its events are linked already
        return counts
    params = asdict(shard)
    with conn.transaction():
        template = conn.execute(query("current_templates", templates="execution"), params).fetchone()
        if template is None:
            counts.not_taken = conn.execute(query("mark_not_taken", shard.queue), params).rowcount
        else:
            params.update(template_id=template[1], version=template[2])
            counts.linked = conn.execute(query("link_template", shard.queue), params).rowcount
    if counts.not_taken:
        log.info(
            "No published template for %s on channel %s: %s events not taken into account",
            shard.event_type,
            Channel(shard.channel).label,
            counts.not_taken,
        )
    return counts
