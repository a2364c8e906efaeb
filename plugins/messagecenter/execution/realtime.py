"""Real time: split, link and deliver the rt queue in one long-lived process, woken by NOTIFY."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from messagecenter.core.settings import ProcessingSettings
from messagecenter.core.types import Queue
from messagecenter.db.queries import query
from messagecenter.delivery.base import TransportFactory
from messagecenter.delivery.guards import ProviderGuards
from messagecenter.execution.deliver import deliver_shard, provider_guards, renderer_for
from messagecenter.execution.link import link_templates
from messagecenter.execution.shards import Counts
from messagecenter.execution.split import split_queue
from messagecenter.templates.rendering import Renderer

log = logging.getLogger(__name__)

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]

# How often a drain logs what its passes did: it wakes every second or so, mostly to find nothing.
SUMMARY_SECONDS = 60.0


def process_once(
    conn: psycopg.Connection[Any],
    queue: Queue,
    settings: ProcessingSettings,
    *,
    transport_for: TransportFactory,
    renderer: Renderer,
    stop: threading.Event | None = None,
    providers: ProviderGuards | None = None,
) -> Counts:
    """One pass of split, link and deliver over ``queue`` in this process (the real-time path).

    The link runs for every shard even when ``stop`` is set (it is one statement each): a split's
    events then never wait for its lease to end, a stopped delivery releases them at once.
    """
    counts = Counts()
    shards = split_queue(conn, queue, settings, quiet_when_idle=True)
    for shard in shards:
        counts.claimed += shard.count if shard.batch_id is not None else 0
        counts.add(link_templates(conn, shard))
    for shard in shards:
        counts.add(
            deliver_shard(
                conn,
                shard,
                settings,
                transport_for=transport_for,
                renderer=renderer,
                stop=stop,
                copy_status=True,  # Sent is readable through the API at once
                providers=providers,
            )
        )
    return counts


def drain_realtime(
    connect: Connect,
    settings: ProcessingSettings,
    *,
    transport_for: TransportFactory,
    lifetime_seconds: float | None = None,
    idle_wait_seconds: float = 1.0,
    summary_seconds: float = SUMMARY_SECONDS,
    stop: threading.Event | None = None,
) -> Counts:
    """Drain the rt queue as events arrive until the lifetime is spent or ``stop`` is set.

    A ``LISTEN mc_rt_event`` connection wakes the loop as soon as an insert commits (the queue's
    statement trigger notifies); with nothing to do it also wakes every ``idle_wait_seconds`` for
    retries and scheduled events. A bounded lifetime lets the next DAG run take over cleanly. A
    stop (SIGTERM: a deploy, a worker restart) ends it within about a second plus the message in
    flight: what was sent is logged, what was claimed and not sent is released at once.

    A pass that did work logs its counts; idle passes are only counted, and every
    ``summary_seconds`` one line says how many passes ran and what they did.
    """
    renderer = renderer_for(settings)
    total = Counts()
    stop = stop or threading.Event()
    deadline = time.monotonic() + (lifetime_seconds or settings.rt_drain_seconds)
    window = _Window()
    with connect() as listener, connect() as conn, provider_guards(settings, transport_for) as providers:
        listener.autocommit = True
        listener.execute(query("listen_rt_events"))
        while time.monotonic() < deadline and not stop.is_set():
            counts = process_once(
                conn,
                "rt",
                settings,
                transport_for=transport_for,
                renderer=renderer,
                stop=stop,
                providers=providers,
            )
            busy = bool(counts.claimed or counts.delivered)
            if busy:
                counts.log("rt drain pass")
                total.add(counts)
            window.count(busy, counts)
            if window.age() >= summary_seconds:
                window.log()
                window = _Window()
            if busy:
                continue  # more may be waiting: look again before sleeping
            timeout = min(idle_wait_seconds, max(deadline - time.monotonic(), 0.0))
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                pass
    if stop.is_set():
        log.info("rt drain stopped on request")
    total.log("rt drain")
    return total


class _Window:
    """What a drain's passes did since its last summary line."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.passes = self.idle = self.claimed = self.delivered = 0

    def count(self, busy: bool, counts: Counts) -> None:
        self.passes += 1
        self.idle += not busy
        self.claimed += counts.claimed
        self.delivered += counts.delivered

    def age(self) -> float:
        return time.monotonic() - self.started

    def log(self) -> None:
        if self.idle == self.passes:
            log.info("rt drain idle: %s passes, 0 events in the last %.0f s", self.passes, self.age())
        else:
            log.info(
                "rt drain: %s passes (%s idle) in the last %.0f s: claimed %s, delivered %s",
                self.passes,
                self.idle,
                self.age(),
                self.claimed,
                self.delivered,
            )
