"""Airflow operators of the Message Center workflows: thin wrappers over the domain packages.

Shaped like the common-sql operators: keyword-only arguments, the database hook built lazily in a
``cached_property`` (never while a DAG file is parsed), small results in XCom (shard descriptors
and counts, never events). Each operator implements ``run``; :meth:`MessageCenterOperator.execute`
is the one place that decides whether a failure is retried.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import psycopg
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from messagecenter import execution
from messagecenter.airflow import metrics
from messagecenter.airflow.connections import BOUNCE_MAILBOX_CONN_ID, mailbox_settings
from messagecenter.airflow.hooks import MessageCenterDbHook
from messagecenter.core.errors import ConfigError, is_permanent
from messagecenter.core.settings import EXEC_CONN_PREFIX, Settings, get_settings
from messagecenter.core.types import Queue
from messagecenter.execution import heartbeat

# Feedback nobody matched is kept this long (an SMS receipt may come before the submit answer).
UNMATCHED_FEEDBACK_DAYS = 7


class MessageCenterOperator(BaseOperator):
    """Base of every Message Center operator: runs :meth:`run`, and fails at once (no retry) when
    the error would happen again: configuration, schema and template errors. Transient ones (a late
    writer, an unreachable database) keep Airflow's retries."""

    def execute(self, context: Context) -> Any:
        try:
            return self.run(context)
        except Exception as exc:
            if is_permanent(exc):
                self.log.error("Not retried (fix it, then clear the task): %s", exc)
                raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
            raise

    def run(self, context: Context) -> Any:
        """The task's work (subclasses)."""
        raise NotImplementedError

    # Set while a stoppable task runs; not built in __init__, as operators are copied and serialised.
    _stop_event: threading.Event | None = None

    def on_kill(self) -> None:
        """SIGTERM (the task runner calls this: a deploy, a worker restart): stop after the message
        in flight, log what was sent, release the rest."""
        if self._stop_event is not None:
            self.log.info("Stop requested: finishing the message in flight, releasing the rest")
            self._stop_event.set()

    @contextlib.contextmanager
    def stoppable(self) -> Iterator[threading.Event]:
        """The event :meth:`on_kill` sets; SIGINT (the first signal of Airflow's kill escalation)
        sets it too instead of interrupting a send half-way."""
        self._stop_event = stop = threading.Event()
        previous: Any = None
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
        try:
            yield stop
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)
            self._stop_event = None


class _ExecutionOperator(MessageCenterOperator):
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

    def record_heartbeat(self, workflow: str, rows: int, started: float) -> None:
        """Record ``workflow``'s heartbeat on the execution database, in its own short transaction.

        Never fails the task: the work is done and committed; a missing heartbeat (say the schema
        is not upgraded yet) is logged with what to do.
        """
        seconds = time.monotonic() - started
        try:
            with self.hook.connect() as conn:
                heartbeat.record_heartbeat(conn, workflow, rows, seconds)
        except Exception as exc:
            self.log.warning(
                "Heartbeat of %s not recorded (run `python -m messagecenter db upgrade`?): %s", workflow, exc
            )


class SplitQueueOperator(_ExecutionOperator):
    """Claim the due pending events of an event queue and return shard descriptors (XCom).

    :param event_queue: ``rt`` or ``batch`` (not ``queue``: that is the operator's Celery queue).
    """

    template_fields: Sequence[str] = ("event_queue",)

    def __init__(self, *, event_queue: Queue, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_queue = event_queue

    def run(self, context: Context) -> list[dict[str, Any]]:
        started = time.monotonic()
        with self.hook.connect() as conn:
            shards = execution.split_queue(conn, self.event_queue, self.settings.processing)
        if self.event_queue == "batch":  # the first task of batchEventsProcessing: it always runs
            claimed = sum(shard.count for shard in shards if shard.batch_id is not None)
            self.record_heartbeat(heartbeat.BATCH_WORKFLOW, claimed, started)
        return [shard.to_xcom() for shard in shards]


class LinkTemplatesOperator(_ExecutionOperator):
    """Link one shard's events to their latest published template (mapped over the shards).

    :param shard: a shard descriptor from :class:`SplitQueueOperator`; returned unchanged for delivery.
    """

    def __init__(self, *, shard: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shard = shard

    def run(self, context: Context) -> dict[str, Any]:
        shard = execution.Shard.from_xcom(self.shard)
        with self.hook.connect() as conn:
            counts = execution.link_templates(conn, shard)
        counts.log(f"Link {shard.queue} {shard.event_type}/{shard.channel}")
        return shard.to_xcom()


class DeliverMessagesOperator(_ExecutionOperator):
    """Render and send one shard's messages, writing a delivery log per event (mapped).

    :param shard: a shard descriptor.
    """

    def __init__(self, *, shard: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shard = shard

    def run(self, context: Context) -> dict[str, int]:
        from messagecenter.airflow.transports import transport_for

        shard = execution.Shard.from_xcom(self.shard)
        with self.stoppable() as stop, self.hook.connect() as conn:
            counts = execution.deliver_shard(
                conn, shard, self.settings.processing, transport_for=transport_for, stop=stop
            )
        counts.log(f"Deliver {shard.queue} {shard.event_type}/{shard.channel}")
        metrics.delivered(shard.queue, sent=counts.sent, failed=counts.failed, ignored=counts.ignored)
        return counts.summary()


class DrainRealtimeOperator(_ExecutionOperator):
    """Process real-time events as they arrive, for a bounded lifetime (LISTEN/NOTIFY wake-up).

    :param lifetime_seconds: how long this task drains before the next DAG run takes over
        (default ``MC_RT_DRAIN_SECONDS``).
    """

    def __init__(self, *, lifetime_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lifetime_seconds = lifetime_seconds

    def run(self, context: Context) -> dict[str, int]:
        from messagecenter.airflow.transports import transport_for, warm_up

        warm_up()
        started = time.monotonic()
        pulse = heartbeat.Pulse(
            self.hook.connect, heartbeat.RT_WORKFLOW, self.settings.monitoring.heartbeat_seconds
        )
        with self.stoppable() as stop, pulse:  # the drain is seen alive while it runs
            counts = execution.drain_realtime(
                self.hook.connect,
                self.settings.processing,
                transport_for=transport_for,
                lifetime_seconds=self.lifetime_seconds,
                stop=stop,
            )
        self.record_heartbeat(heartbeat.RT_WORKFLOW, counts.delivered, started)
        metrics.delivered("rt", sent=counts.sent, failed=counts.failed, ignored=counts.ignored)
        return counts.summary()


class ReadSmsReceiptsOperator(_ExecutionOperator):
    """Read the SMSC's delivery receipts (``mc_sms``, conn type ``smpp``) on a receiver bind, for a
    bounded lifetime, applying them in small batches, each acknowledged once committed; SIGTERM
    stops it after the batch in hand.

    :param lifetime_seconds: how long this task reads before the next DAG run takes over.
    """

    def __init__(self, *, lifetime_seconds: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lifetime_seconds = lifetime_seconds

    def run(self, context: Context) -> dict[str, int]:
        from messagecenter.airflow.transports import smpp_receiver
        from messagecenter.core.settings import SMS_CONN_ID
        from messagecenter.execution.receipts import drain_receipts

        with self.stoppable() as stop:
            counts = drain_receipts(
                smpp_receiver(SMS_CONN_ID),
                lambda: self.hook.connect(autocommit=True),
                self.settings.feedback,
                lifetime_seconds=self.lifetime_seconds,
                stop=stop,
            )
        return counts.summary()


# The feedback gauges count a day of delivery logs: every fifth minute is fresh enough.
FEEDBACK_GAUGE_MINUTES = 5


class UpdateEventsStatusOperator(_ExecutionOperator):
    """Copy Sent / Ignored / Failed from the delivery logs onto the events, past the watermark."""

    def run(self, context: Context) -> dict[str, int]:
        started = time.monotonic()
        from messagecenter.intake.store import pending_counts

        with self.hook.connect() as conn:
            counts = execution.update_events_status(conn)
            waiting = pending_counts(conn)
            if _feedback_gauges_due(context):
                self.gauge_feedback(conn)
        counts.log("Update events status")
        metrics.pending(waiting)
        self.record_heartbeat(heartbeat.STATUS_WORKFLOW, counts.copied, started)
        return counts.summary()

    def gauge_feedback(self, conn: psycopg.Connection[Any]) -> None:
        """Send the bounce and complaint rates and the quarantine counts; never fails the task."""
        from messagecenter.monitoring import indicators

        try:
            with conn.transaction():
                rates = indicators.feedback_rates(conn, self.settings.monitoring.feedback_window)
                quarantine = indicators.quarantine_summary(conn)["totals"]
        except psycopg.Error as exc:
            self.log.warning("Feedback metrics not sent: %s", exc)
            return
        metrics.feedback_figures(rates, quarantine)


def _feedback_gauges_due(context: Context) -> bool:
    """Every FEEDBACK_GAUGE_MINUTES of the schedule, and on every run that has no logical date."""
    when = context.get("logical_date") or context.get("data_interval_end")
    return when is None or when.minute % FEEDBACK_GAUGE_MINUTES == 0


class ExpireEventsOperator(_ExecutionOperator):
    """Mark Event expired the events not delivered within their queue's validity."""

    def run(self, context: Context) -> dict[str, int]:
        with self.hook.connect() as conn:
            counts = execution.expire_events(conn, self.settings.processing)
        counts.log("Expire events")
        return counts.summary()


class UpdateQuarantineOperator(_ExecutionOperator):
    """Keep the quarantine as Campaign does, after each status copy.

    Qualifies the synchronous refusals of the latest sends with the feedback rules (a 550 "user
    unknown" quarantines its address like a bounce), applies the kept feedback whose delivery log
    exists now, releases With errors and Mailbox full addresses whose delay is over, and forgets
    unmatched feedback older than a week.
    """

    def run(self, context: Context) -> dict[str, int]:
        from messagecenter.feedback import apply, quarantine, rules

        feedback = self.settings.feedback
        with self.hook.connect(autocommit=True) as conn:
            qualify = rules.qualifier(conn)
            qualified = apply.qualify_send_failures(conn, qualify=qualify, rules=feedback)
            rematched = apply.rematch_unmatched(conn, qualify=qualify, rules=feedback).applied
            released = quarantine.release_automatically(conn, feedback)
            forgotten = quarantine.forget_unmatched(conn, UNMATCHED_FEEDBACK_DAYS * 86_400)
        self.log.info(
            "Quarantine: %s send failures qualified, %s kept feedback applied, %s addresses released, "
            "%s unmatched feedback forgotten",
            qualified,
            rematched,
            released,
            forgotten,
        )
        return {"qualified": qualified, "rematched": rematched, "released": released, "forgotten": forgotten}


class ProcessBouncesOperator(_ExecutionOperator):
    """Read the bounce mailbox (``mc_bounce_mailbox``), apply what it says, then tidy it.

    Bounces, complaint reports and auto-replies are matched to their events (VERP, Message-ID),
    qualified and applied batch by batch (``MC_BOUNCE_BATCH``); a handled mail is moved to
    ``MC-Processed`` only once its batch is committed, one that cannot be matched or read to
    ``MC-Unmatched``, never deleted unread.

    :param mailbox_conn_id: the mailbox's Airflow connection (type ``imap`` or ``pop3``).
    """

    def __init__(self, *, mailbox_conn_id: str = BOUNCE_MAILBOX_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mailbox_conn_id = mailbox_conn_id

    def run(self, context: Context) -> dict[str, Any]:
        from messagecenter.feedback.inbox import process_mailbox
        from messagecenter.feedback.mailbox import open_mailbox

        started = time.monotonic()
        settings = self.settings
        with (
            open_mailbox(mailbox_settings(self.mailbox_conn_id, settings)) as mailbox,
            self.hook.connect(autocommit=True) as conn,
        ):
            counts = process_mailbox(mailbox, conn, settings.feedback)
        self.log.info(
            "Bounce mailbox: %s mails read, %s handled, %s set aside (%s unmatched, %s unreadable); "
            "%s logs changed, %s failed after the send, %s quarantined, %s denylisted",
            counts.read,
            counts.handled,
            counts.set_aside,
            counts.unmatched,
            counts.unreadable,
            counts.feedback.applied,
            counts.feedback.failed,
            counts.feedback.quarantined,
            counts.feedback.denylisted,
        )
        self.record_heartbeat(heartbeat.BOUNCE_WORKFLOW, counts.read, started)
        metrics.feedback("mailbox", counts.feedback.by_kind)
        return counts.as_dict()


# --- Control workflows ---------------------------------------------------------------------------


class _InstanceOperator(MessageCenterOperator):
    """Base of the control tasks that work on one execution instance and the control database.

    :param instance: the execution instance, i.e. connection ``mc_exec_<instance>``.
    :param control_conn_id: connection of the control database (default ``mc_control``).
    """

    template_fields: Sequence[str] = ("instance",)
    ui_color = "#fef7e0"

    def __init__(self, *, instance: str, control_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instance = instance
        self.control_conn_id = control_conn_id or get_settings().control_conn_id

    @property
    def exec_conn_id(self) -> str:
        return EXEC_CONN_PREFIX + self.instance


class ArchiveEventsOperator(_InstanceOperator):
    """Copy one execution instance's events and delivery logs of the run's data interval to control."""

    def run(self, context: Context) -> dict[str, Any]:
        from messagecenter.airflow.hooks import instance_id_of
        from messagecenter.control.archiving import archive_interval

        exec_conn_id = self.exec_conn_id
        settings = get_settings()
        start, end = context["data_interval_start"], context["data_interval_end"]
        if start is None or end is None:
            raise ConfigError("an archiving run needs a data interval (a scheduled or backfill run)")
        with (
            MessageCenterDbHook(exec_conn_id).connect() as exec_conn,
            MessageCenterDbHook(self.control_conn_id).connect() as control_conn,
        ):
            result = archive_interval(
                exec_conn,
                control_conn,
                instance=self.instance,
                instance_id=instance_id_of(exec_conn_id),
                start=start,
                end=end,
                overlap=settings.archiving.archive_overlap,
            )
        lag = (datetime.now(UTC) - result.archived_until).total_seconds()
        metrics.archiving_lag(self.instance, lag)
        return {
            "events": result.events,
            "logs": result.logs,
            "archived_until": result.archived_until.isoformat(),
            "lag_seconds": round(lag, 1),
        }


class PublishTemplatesOperator(_InstanceOperator):
    """Publish control's latest template versions on one execution instance (mapped over instances).

    Templates are deployed only on an instance whose technical workflows run. One whose workflows
    never reported a heartbeat (registered, not started yet) is waiting: its task is skipped, saying
    what to start, and the first run after they report publishes there. One whose workflows ran and
    stopped (no heartbeat younger than ``MC_HEARTBEAT_MAX_AGE_SECONDS``) fails, naming them. The
    other instances get theirs either way.

    :param force: publish whatever the heartbeats say (also the DAG run param ``force``).
    """

    def __init__(self, *, force: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.force = force

    def run(self, context: Context) -> dict[str, Any]:
        from messagecenter.airflow.actions import publish_to_instance

        params = context.get("params") or {}
        force = self.force or str(params.get("force", False)).lower() in ("true", "1")
        if force:
            self.log.warning("Publishing on %s whether its workflows run or not (force)", self.instance)
        done = publish_to_instance(
            MessageCenterDbHook(self.control_conn_id),
            MessageCenterDbHook(self.exec_conn_id),
            instance=self.instance,
            force=force,
        )
        if done.waiting is not None:
            message = done.waiting.waiting_message(self.instance)
            self.log.warning("Nothing published: %s", message)
            raise AirflowSkipException(message)
        self.log.info(
            "Published on %s: %s new version(s), %s already there",
            self.instance,
            done.created,
            done.unchanged,
        )
        return done.to_json()


class PurgeArchivedOperator(_ExecutionOperator):
    """Delete final events and delivery logs past the retention, only those control has archived."""

    def run(self, context: Context) -> dict[str, int]:
        from messagecenter.execution.cleanup import purge_archived

        started = time.monotonic()
        with self.hook.connect() as conn:
            counts = purge_archived(conn, retention=self.settings.archiving.retention)
        self.record_heartbeat(heartbeat.CLEANUP_WORKFLOW, sum(counts.values()), started)
        return counts


class SyncQuarantineOperator(_InstanceOperator):
    """Merge one execution instance's quarantine changes into control's and write control's back.

    Mapped over the instances by ``publishTemplates``: a hard bounce seen on one instance reaches
    every other one at its next turn, within minutes. Unlike publishing, it needs no heartbeat.
    """

    def run(self, context: Context) -> dict[str, int]:
        from messagecenter.feedback.quarantine import sync_instance

        with (
            MessageCenterDbHook(self.exec_conn_id).connect(autocommit=True) as exec_conn,
            MessageCenterDbHook(self.control_conn_id).connect(autocommit=True) as control_conn,
        ):
            pulled, pushed = sync_instance(control_conn, exec_conn, self.instance)
        return {"pulled": pulled, "pushed": pushed}
