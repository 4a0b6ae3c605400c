"""
### mysql_to_s3_hourly: incremental MySQL tables -> S3, one window per hour

Lands the `mode: incremental` tables of `include/config/mysql_tables.yaml` (orders, orderdetails,
payments, customers of classicmodels) to
`s3://landing/raw/classicmodels/<table>/dt=YYYY-MM-DD/hour=HH/part-*.parquet` with a `_manifest.json`
written last (rows, SHA-256 of each part, schema, max watermark landed, schema changes).

**Batch boundary**: the run's data interval. Each table reads the half-open window
`[data_interval_start - lookback, data_interval_end)` on its `watermark` column, so a row on an
hour boundary lands in exactly one hour (lookback, per table, re-reads late rows on purpose).
The rows written are reconciled with `COUNT(*)` of the same window before publishing; a mismatch
fails the task and nothing is published. Tables fan out with dynamic task mapping, capped by the
`mysql_source` pool; `split:` tables run as parallel primary-key ranges and publish one manifest.

**Trigger** a run from the UI ("Trigger DAG w/ config"): without parameters it lands the last
complete hour; `window_start`/`window_end` pick another window and `tables` restricts it to some
tables. **Backfill** with `airflow backfill create --dag-id mysql_to_s3_hourly --from-date ...
--to-date ...` (or the UI's backfill dialog): each hour is rewritten in place, reruns give the same
objects.

**Connections**: `mysql_source` (type mysql: the RDS endpoint, database, user), `aws_default`
(the landing bucket's account; `endpoint_url` in extra for S3-compatible stores).
"""

from __future__ import annotations

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from s3lander.dag_defaults import DEFAULT_ARGS, START_DATE, window_params
from s3lander.operators.sql_to_s3 import land_tables
from s3lander.sql.tables import load_source_config

CONFIG = load_source_config("mysql_tables.yaml")
TABLES = [t.name for t in CONFIG.by_mode("incremental")]

with DAG(
    dag_id="mysql_to_s3_hourly",
    description="Incremental MySQL tables -> S3 by hourly data interval (watermark windows, reconciled)",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["mysql", "s3", "incremental", "hourly"],
    params={
        **window_params(),
        "tables": Param([], type="array", items={"type": "string", "enum": TABLES}, title="Tables",
                        description="Land only these tables (empty: all incremental tables of the config)"),
    },
):
    land_tables(CONFIG, "incremental")
