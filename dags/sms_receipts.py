"""
### SMS receipts (`smsReceipts`)

A continuous DAG for an SMSC reached over SMPP (the Airflow connection `mc_sms` of conn type
`smpp`): its one long-lived task binds as a receiver and reads the delivery receipts
(`deliver_sm`, SMPP 3.4 appendix B) of the messages sent. Each small batch is applied to the
delivery logs (`DELIVRD` delivered; `UNDELIV`, `REJECTD`, `EXPIRED`, `DELETED` Delivery failed,
qualified by the feedback rules) and acknowledged to the SMSC only once committed. A receipt that
comes before its submit answer is stored is kept and matched later by `updateEventsStatus`. Each
run reads for 5 minutes, then the next run takes over.

Turn the DAG on to start the workflow (only with an SMPP `mc_sms`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from messagecenter.airflow.dags import execution_dag_args, runs_execution
from messagecenter.airflow.operators import ReadSmsReceiptsOperator


@dag(
    **execution_dag_args(
        "smsReceipts",
        "SMS receipts",
        schedule="@continuous",
        doc_md=__doc__,
        run_timeout=timedelta(hours=1),
    )
)
def sms_receipts() -> None:
    ReadSmsReceiptsOperator(task_id="read_sms_receipts")


if runs_execution():
    sms_receipts()
