# The Airflow image of the Message Center stack (docker-compose.yaml builds it for every Airflow service).
# Extends the official image as its documentation recommends: the same Airflow version as the one
# requirements.txt pins (tests/test_compose.py checks they agree), and the whole pinned set on top.
FROM apache/airflow:3.3.2-python3.11

COPY requirements.txt /
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements.txt

# Mount points of the named volumes of docker-compose.yaml (generated config and secrets, task logs):
# a new volume copies this directory, so it starts owned by the airflow user and writable by group 0.
RUN mkdir -p -m 775 /opt/airflow/config /opt/airflow/logs
