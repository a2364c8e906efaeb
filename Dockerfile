# The Airflow image of the Message Center stack (docker-compose.yaml builds it for every Airflow service).
# Extends the official image as its documentation recommends: the same Airflow version as the one
# requirements.txt pins (tests/devstack/test_compose.py checks they agree), the whole pinned set on top, then
# the Message Center package itself (`pip install .`: the runtime package with its SQL and page files,
# and the provider entry point that gives Airflow's "Add connection" form the Message Center
# connection types). docker-compose.yaml still mounts dags/, plugins/ and include/, which run.
FROM apache/airflow:3.3.2-python3.11

COPY requirements.txt /
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements.txt

# What `pip install .` builds from (tests/devstack/test_packaging.py builds this very copy). The folders are
# made first by the airflow user, who runs pip: the build writes next to the sources.
RUN mkdir -p /tmp/messagecenter/plugins/messagecenter /tmp/messagecenter/include/sql
COPY --chown=airflow:0 pyproject.toml setup.py requirements.in /tmp/messagecenter/
COPY --chown=airflow:0 plugins/messagecenter /tmp/messagecenter/plugins/messagecenter
COPY --chown=airflow:0 include/sql /tmp/messagecenter/include/sql
RUN pip install --no-cache-dir /tmp/messagecenter && rm -rf /tmp/messagecenter

# Mount points of the named volumes of docker-compose.yaml (generated config and secrets, task logs):
# a new volume copies this directory, so it starts owned by the airflow user and writable by group 0.
RUN mkdir -p -m 775 /opt/airflow/config /opt/airflow/logs
