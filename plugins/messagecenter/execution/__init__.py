"""The execution workflows' logic, one module per step, on plain psycopg connections.

``split`` (claim a queue's due events into shards), ``link`` (route them to their template),
``deliver`` (render, send, log; ``claim`` locks its chunks, ``results`` writes their outcome),
``status`` (copy statuses back, expire), ``realtime`` (the rt drain), ``cleanup`` (purge what
control archived), ``heartbeat`` (each workflow records when it last ran;
``messagecenter.monitoring`` judges them); ``shards`` holds what they pass along. Every step is
set-based SQL (``include/sql/queries/*.sql``); Python touches single events only to render and
send them. The Airflow operators (``messagecenter.airflow.operators``) call these.
"""

from __future__ import annotations

from messagecenter.delivery.base import TransportFactory
from messagecenter.execution.deliver import deliver_shard
from messagecenter.execution.link import link_templates
from messagecenter.execution.realtime import drain_realtime, process_once
from messagecenter.execution.results import backoff
from messagecenter.execution.shards import Counts, Shard
from messagecenter.execution.split import split_queue
from messagecenter.execution.status import expire_events, update_events_status

__all__ = [
    "Counts",
    "Shard",
    "TransportFactory",
    "backoff",
    "deliver_shard",
    "drain_realtime",
    "expire_events",
    "link_templates",
    "process_once",
    "split_queue",
    "update_events_status",
]
