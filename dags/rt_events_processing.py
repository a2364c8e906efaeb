"""
### Real-time events processing (`rtEventsProcessing`)

A continuous DAG: its one long-lived task drains the **rt** queue as events arrive. An insert wakes
it through PostgreSQL `LISTEN/NOTIFY`, and it splits, links and delivers with the same code as the
batch workflow, so an event is delivered within a second, far below Airflow's scheduling latency.
Each run drains for a bounded lifetime (`MC_RT_DRAIN_SECONDS`, default 5 minutes), then the next
run takes over.

Turn the DAG on to start the workflow.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from messagecenter.airflow.dags import execution_dag_args, runs_execution
from messagecenter.airflow.operators import DrainRealtimeOperator


@dag(
    **execution_dag_args(
        "rtEventsProcessing",
        "Real-time events processing",
        schedule="@continuous",
        doc_md=__doc__,
        run_timeout=timedelta(hours=2),
    )
)
def rt_events_processing() -> None:
    DrainRealtimeOperator(task_id="drain_rt_queue")


if runs_execution():
    rt_events_processing()
