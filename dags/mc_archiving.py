"""
### Message Center archiving (`mcArchiving_<instance>`)

One DAG per registered execution instance, i.e. per `mc_exec_<instance>` connection: **adding the
connection registers the instance** and its archiving DAG appears, running (unpaused at creation).

Every hour (UTC) `archive_events` copies the events and delivery logs the instance changed in the
run's data interval into the control archive (`mc.event_histo`, `mc.delivery_log_histo`) with an
idempotent bulk upsert, then records how far the instance is archived (`mc.archive_state` on
control, `mc.archive_mark` on the instance, which `mcCleanup` checks before purging).

Re-archive a period with a backfill:
`airflow backfill create --dag-id mcArchiving_<instance> --from-date 2026-11-01 --to-date 2026-11-02`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag
from airflow.timetables.interval import CronDataIntervalTimetable

from messagecenter.airflow.dags import control_dag_args, runs_control
from messagecenter.airflow.operators import ArchiveEventsOperator
from messagecenter.airflow.registry import archiving_dag_id, archiving_instances


def archiving_dag(instance: str) -> None:
    @dag(
        **control_dag_args(
            archiving_dag_id(instance),
            f"Message Center archiving ({instance})",
            schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
            doc_md=__doc__,
            run_timeout=timedelta(hours=6),
        )
    )
    def mc_archiving() -> None:
        ArchiveEventsOperator(task_id="archive_events", instance=instance)

    mc_archiving()


if runs_control():
    for _instance in archiving_instances():
        archiving_dag(_instance)
