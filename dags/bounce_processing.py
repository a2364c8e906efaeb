"""
### Bounce processing (`bounceProcessing`)

Every 5 minutes, like Campaign's inMail: reads the bounce mailbox of the Airflow connection
`mc_bounce_mailbox` (type `imap` or `pop3`; the schema is the IMAP folder) in batches
(`MC_BOUNCE_BATCH`), parses RFC 3464 delivery status notifications, RFC 5965 complaint reports and
non-standard bounces, matches each to its event by its VERP return path (signed with
`MC_FEEDBACK_SECRET`) or its Message-ID, qualifies the error with the feedback rules and applies
it: the delivery log turns Sent into Delivery failed, the address is quarantined or denylisted,
and `updateEventsStatus` copies the new status onto the event. Handled mails move to
`MC-Processed` once applied; mails it cannot match or read move to `MC-Unmatched`, for a person.

Turn the DAG on to start the workflow.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from messagecenter.airflow.dags import execution_dag_args, runs_execution
from messagecenter.airflow.operators import ProcessBouncesOperator


@dag(
    **execution_dag_args(
        "bounceProcessing",
        "Bounce processing",
        schedule="*/5 * * * *",
        doc_md=__doc__,
        run_timeout=timedelta(hours=1),
    )
)
def bounce_processing() -> None:
    ProcessBouncesOperator(task_id="process_bounces")


if runs_execution():
    bounce_processing()
