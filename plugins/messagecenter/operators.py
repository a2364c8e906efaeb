"""Airflow operators of the execution workflows: thin wrappers over ``processing``.

Shaped like the common-sql operators: keyword-only arguments, the database hook built lazily in a
``cached_property`` (never while a DAG file is parsed), small results in XCom (shard descriptors
and counts, never events).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from messagecenter import processing
from messagecenter.config import Queue, Settings, get_settings
from messagecenter.db import MessageCenterDbHook


class _ExecutionOperator(BaseOperator):
    """Base: knows the execution database connection and the processing settings."""

    ui_color = "#e8f0fe"

    def __init__(self, *, mc_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mc_conn_id = mc_conn_id or get_settings().execution_conn_id

    @cached_property
    def settings(self) -> Settings:
        return get_settings()

    @cached_property
    def hook(self) -> MessageCenterDbHook:
        return MessageCenterDbHook(self.mc_conn_id)


class SplitQueueOperator(_ExecutionOperator):
    """Claim the due pending events of an event queue and return shard descriptors (XCom).

    :param event_queue: ``rt`` or ``batch`` (not ``queue``: that is the operator's Celery queue).
    """

    template_fields: Sequence[str] = ("event_queue",)

    def __init__(self, *, event_queue: Queue, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_queue = event_queue

    def execute(self, context: Context) -> list[dict[str, Any]]:
        with self.hook.connect() as conn:
            shards = processing.split_queue(conn, self.event_queue, self.settings.processing)
        return [shard.to_xcom() for shard in shards]


class LinkTemplatesOperator(_ExecutionOperator):
    """Link one shard's events to their latest published template (mapped over the shards).

    :param shard: a shard descriptor from :class:`SplitQueueOperator`; returned unchanged for delivery.
    """

    def __init__(self, *, shard: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shard = shard

    def execute(self, context: Context) -> dict[str, Any]:
        shard = processing.Shard.from_xcom(self.shard)
        with self.hook.connect() as conn:
            counts = processing.link_templates(conn, shard)
        counts.log(f"Link {shard.queue} {shard.event_type}/{shard.channel}")
        return shard.to_xcom()


class DeliverMessagesOperator(_ExecutionOperator):
    """Render and send one shard's messages, writing a delivery log per event (mapped).

    :param shard: a shard descriptor.
    """

    def __init__(self, *, shard: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shard = shard

    def execute(self, context: Context) -> dict[str, int]:
        from messagecenter.delivery import transport_for

        shard = processing.Shard.from_xcom(self.shard)
        with self.hook.connect() as conn:
            counts = processing.deliver_shard(
                conn, shard, self.settings.processing, transport_for=transport_for
            )
        counts.log(f"Deliver {shard.queue} {shard.event_type}/{shard.channel}")
        return counts.summary()


class DrainRealtimeOperator(_ExecutionOperator):
    """Process real-time events as they arrive, for a bounded lifetime (LISTEN/NOTIFY wake-up).

    :param lifetime_seconds: how long this task drains before the next DAG run takes over
        (default ``MC_RT_DRAIN_SECONDS``).
    """

    def __init__(self, *, lifetime_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lifetime_seconds = lifetime_seconds

    def execute(self, context: Context) -> dict[str, int]:
        from messagecenter.delivery import transport_for

        counts = processing.drain_realtime(
            self.hook.connect,
            self.settings.processing,
            transport_for=transport_for,
            lifetime_seconds=self.lifetime_seconds,
        )
        return counts.summary()


class UpdateEventsStatusOperator(_ExecutionOperator):
    """Copy Sent / Ignored / Failed from the delivery logs onto the events, past the watermark."""

    def execute(self, context: Context) -> dict[str, int]:
        with self.hook.connect() as conn:
            counts = processing.update_events_status(conn)
        counts.log("Update events status")
        return counts.summary()


class ExpireEventsOperator(_ExecutionOperator):
    """Mark Event expired the events not delivered within their queue's validity."""

    def execute(self, context: Context) -> dict[str, int]:
        with self.hook.connect() as conn:
            counts = processing.expire_events(conn, self.settings.processing)
        counts.log("Expire events")
        return counts.summary()
