"""Is this deployment healthy? What the doctor and the Message Center page conclude, without Airflow.

``doctor`` (the findings of ``python -m messagecenter doctor``: each check, what to do when it fails,
and how they are printed), ``indicators`` (what the page measures on one execution database: queue
indicators with Campaign's alert levels, statuses, throughput; and control's archiving lags),
``heartbeats`` (when a workflow counts as stopped, and the guard that keeps templates off such an
instance) and ``probes`` (the only module here that opens network connections: does a provider
answer). ``messagecenter.airflow.readers`` reads Airflow and the databases and feeds them.
"""
