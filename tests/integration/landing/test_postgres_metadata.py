"""The project on a PostgreSQL metadata database (instead of SQLite), when one is reachable.

Runs once per suite: creates a throw-away database on 127.0.0.1:5432, points
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` at it and runs the demo for one DAG end to end in a
subprocess (its own stack, migrate, a real DagRun). Skipped, and reported as skipped, when no
PostgreSQL server answers there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from include.stack.base import REPO_ROOT, port_open

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
PG_USER = os.environ.get("PGUSER", "postgres")
DAG_ID = "mysql_to_s3_daily"


def _psql(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", PG_USER, "-d", "postgres", "-tAc", sql],
                          capture_output=True, text=True, check=False)


@pytest.fixture
def pg_database():
    if not port_open(5432):
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    name = f"airflow_test_{uuid.uuid4().hex[:8]}"
    out = _psql(f"CREATE DATABASE {name}")
    if out.returncode != 0:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 refused CREATE DATABASE as {PG_USER}: {out.stderr.strip()}")
    yield f"postgresql+psycopg2://{PG_USER}@127.0.0.1:5432/{name}"
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_dag_runs_end_to_end_on_postgres_metadata(pg_database, tmp_path):
    if not (REPO_ROOT / "dags" / f"{DAG_ID}.py").exists():
        pytest.fail(f"dags/{DAG_ID}.py is missing")
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_database,
           "AIRFLOW_HOME": str(tmp_path / "airflow")}
    out = subprocess.run([sys.executable, "-m", "include.demo", "--state", str(tmp_path / "state"), "--dag", DAG_ID],
                         capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "all 1 DAG runs succeeded" in out.stdout
    # the run really went to PostgreSQL: its dag_run row is there
    rows = subprocess.run(["psql", pg_database.replace("postgresql+psycopg2", "postgresql"), "-tAc",
                           f"SELECT state FROM dag_run WHERE dag_id = '{DAG_ID}'"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert rows == ["success"]
