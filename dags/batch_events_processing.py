"""
### Batch events processing (`batchEventsProcessing`)

Every minute: claim the due events of the **batch** queue and cut them into shards by event type
and channel (`split_queue`), link each shard to its latest published template (`link_templates`,
mapped), then render and send its messages (`deliver_messages`, mapped), writing one delivery log
per event. The number of task instances does not grow with the number of events.

Turn the DAG on to start the workflow. Statuses are copied onto the events by `updateEventsStatus`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from messagecenter.airflow.dags import execution_dag_args, runs_execution
from messagecenter.airflow.operators import DeliverMessagesOperator, LinkTemplatesOperator, SplitQueueOperator


@dag(
    **execution_dag_args(
        "batchEventsProcessing",
        "Batch events processing",
        schedule="* * * * *",
        doc_md=__doc__,
        run_timeout=timedelta(hours=1),
    )
)
def batch_events_processing() -> None:
    split_queue = SplitQueueOperator(task_id="split_queue", event_queue="batch")
    link_templates = LinkTemplatesOperator.partial(task_id="link_templates").expand(shard=split_queue.output)
    deliver_messages = DeliverMessagesOperator.partial(task_id="deliver_messages").expand(
        shard=link_templates.output
    )
    split_queue >> link_templates >> deliver_messages


if runs_execution():
    batch_events_processing()
