"""
### Publish message templates (`publishTemplates`)

Copies the latest version of every master template of the control instance (`mc.template`, loaded
with `python -m messagecenter templates load FILE --conn mc_control`) to **every** registered
execution instance (`publish_templates`, mapped over them): the execution instances then route new
events to the new versions. One unreachable instance fails its own task only; a rerun is harmless.

Runs every 5 minutes, on a manual trigger, and whenever an event of the asset
`messagecenter://control/templates` is created (e.g. `POST /api/v2/assets/events` after a
`templates load`, or by a task of your own that produces it).

Templates are deployed only on an instance whose technical workflows (`rtEventsProcessing`,
`batchEventsProcessing`, `updateEventsStatus`) run, i.e. recorded a heartbeat lately. The task of an
instance whose workflows never reported (registered, not started yet) is skipped, saying which DAGs
to turn on: the instance is waiting, and the first run after they report publishes there. The task
of an instance whose workflows ran and stopped fails, naming them. The other instances get their
templates either way. To publish anyway, trigger the DAG with the param `force` set to true.

The same run merges every instance's quarantine changes into control's and writes them back
(`sync_quarantine`, mapped over the instances too): a hard bounce or a complaint seen on one
execution instance reaches the others within minutes.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from messagecenter.airflow.dags import TEMPLATES_ASSET, control_dag_args, runs_control
from messagecenter.airflow.operators import PublishTemplatesOperator, SyncQuarantineOperator


@dag(
    **control_dag_args(
        "publishTemplates",
        "Publish message templates",
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("*/5 * * * *", timezone="UTC"), assets=[TEMPLATES_ASSET]
        ),
        doc_md=__doc__,
        run_timeout=timedelta(minutes=30),
    ),
    params={
        "force": Param(
            False,
            type="boolean",
            description="Publish even on instances whose technical workflows have no recent heartbeat",
        )
    },
)
def publish_templates() -> None:
    @task
    def list_execution_instances() -> list[str]:
        from messagecenter.airflow.registry import archiving_instances

        return archiving_instances()

    instances = list_execution_instances()
    PublishTemplatesOperator.partial(task_id="publish_templates").expand(instance=instances)
    SyncQuarantineOperator.partial(task_id="sync_quarantine").expand(instance=instances)


if runs_control():
    publish_templates()
