"""The Airflow layer: what turns the domain packages into DAGs, tasks and plugin routes.

``dags`` (what every DAG shares), ``operators`` (the tasks), ``hooks`` (database connections from
Airflow connections), ``transports`` (delivery transports from Airflow connections), ``registry``
and ``registry_sync`` (the execution-instance registry kept in Airflow Variables). The only
package of ``messagecenter`` besides ``api`` and ``cli`` that imports Airflow.
"""
