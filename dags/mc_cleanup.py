"""
### Message Center cleanup (`mcCleanup`)

Daily: deletes the events (final statuses only) and delivery logs older than the retention
(`MC_RETENTION_DAYS`, default 30) **only once the control instance has archived them**: a row is
eligible only if last modified before the archived period that the archiving runs write back
(`mc.archive_mark`). An unarchived event is never purged, whatever its age. Deletes run in bounded
batches, each in its own transaction.

Turn the DAG on to start the workflow.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from messagecenter.airflow.dags import execution_dag_args, runs_execution
from messagecenter.airflow.operators import PurgeArchivedOperator


@dag(
    **execution_dag_args(
        "mcCleanup",
        "Message Center cleanup",
        schedule="@daily",
        doc_md=__doc__,
        run_timeout=timedelta(hours=6),
    )
)
def mc_cleanup() -> None:
    PurgeArchivedOperator(task_id="purge_archived")


if runs_execution():
    mc_cleanup()
