"""
### Update events status (`updateEventsStatus`)

Every minute: copy Sent / Ignored / Failed from the delivery logs onto the events with one
set-based statement past a watermark (`update_events_status`), then mark Event expired the events
not delivered within their queue's validity (`expire_events`; `MC_RT_VALIDITY`, `MC_BATCH_VALIDITY`),
and keep the quarantine (`update_quarantine`): qualify the latest send refusals with the feedback
rules, apply kept feedback whose delivery log exists now, release With errors and Mailbox full
addresses whose delay is over (`MC_QUARANTINE_*`).

Turn the DAG on to start the workflow.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from messagecenter.airflow.dags import execution_dag_args, runs_execution
from messagecenter.airflow.operators import (
    ExpireEventsOperator,
    UpdateEventsStatusOperator,
    UpdateQuarantineOperator,
)


@dag(
    **execution_dag_args(
        "updateEventsStatus",
        "Update events status",
        schedule="* * * * *",
        doc_md=__doc__,
        run_timeout=timedelta(minutes=30),
    )
)
def update_events_status() -> None:
    update_status = UpdateEventsStatusOperator(task_id="update_events_status")
    expire_events = ExpireEventsOperator(task_id="expire_events")
    update_quarantine = UpdateQuarantineOperator(task_id="update_quarantine")
    update_status >> [expire_events, update_quarantine]


if runs_execution():
    update_events_status()
