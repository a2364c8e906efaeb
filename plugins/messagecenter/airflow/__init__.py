"""The Airflow layer: what turns the domain packages into DAGs, tasks and plugin routes.

``dags`` (what every DAG shares), ``operators`` (the tasks), ``connections`` (the one Airflow
connection lookup, and the API tokens), ``hooks`` (database connections from Airflow connections),
``transports`` (delivery transports from Airflow connections), ``registry`` and ``registry_sync``
(which execution instances exist: naming conventions, the Variables a DAG file reads, the mirror of
``mc_exec_*`` connections), ``readers`` (what the doctor and the page read from Airflow and the
databases), ``actions`` (one function per operator action, for the CLI, the API, the page and the
tasks) and ``metrics``. The only package of ``messagecenter`` besides ``api`` and ``cli`` that
imports Airflow.
"""
