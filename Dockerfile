# The Airflow image of docker-compose.yaml: the official image plus this project's pinned runtime deps.
# DAGs, plugins and include/ are mounted by compose (or COPY them here for a deployable image).
FROM apache/airflow:3.3.2-python3.11

USER root
# mysqlclient builds against the MariaDB/MySQL client headers
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config default-libmysqlclient-dev openssh-client \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt constraints.txt /opt/airflow/
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt -c /opt/airflow/constraints.txt

ENV PYTHONPATH=/opt/airflow/plugins:/opt/airflow
