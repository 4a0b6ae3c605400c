"""
### mysql_to_s3_daily: full snapshots of small MySQL dimension tables -> S3, once a day

Lands the `mode: snapshot` tables of `include/config/mysql_tables.yaml` (products, productlines,
employees, offices of classicmodels) whole, to
`s3://landing/raw/classicmodels/<table>/dt=YYYY-MM-DD/hour=00/part-*.parquet` plus `_manifest.json`
(written last; rows reconciled with `COUNT(*)`, schema and schema changes, max `updated_at`).

**Batch boundary**: the daily data interval `[00:00, 24:00)` UTC names the partition; the content
is the table as of the run (a snapshot, not a window).

**Trigger** from the UI: without parameters it snapshots into the partition of the last complete
day; `window_start`/`window_end` choose the partition, `tables` restricts the run. **Backfill**
(`airflow backfill create --dag-id mysql_to_s3_daily ...`) rewrites each day's partition with the
table as it is now: snapshots cannot travel back in time, a backfill only restores missing days.

**Connections**: `mysql_source` (type mysql), `aws_default` (landing bucket).
"""

from __future__ import annotations

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from s3lander.dag_defaults import DEFAULT_ARGS, START_DATE, window_params
from s3lander.operators.sql_to_s3 import land_tables
from s3lander.sql.tables import load_source_config

CONFIG = load_source_config("mysql_tables.yaml")
TABLES = [t.name for t in CONFIG.by_mode("snapshot")]

with DAG(
    dag_id="mysql_to_s3_daily",
    description="Full snapshots of small MySQL dimension tables -> S3, daily",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["mysql", "s3", "snapshot", "daily"],
    params={
        **window_params(),
        "tables": Param([], type="array", items={"type": "string", "enum": TABLES}, title="Tables",
                        description="Snapshot only these tables (empty: all snapshot tables of the config)"),
    },
):
    land_tables(CONFIG, "snapshot")
