"""
### mysql_to_s3_threshold: land a MySQL table once N new rows exist

For every table with `threshold:` in `include/config/mysql_tables.yaml` (orders: the default
`threshold`, orderdetails: 2000), a deferrable sensor waits in the triggerer until at least N rows
newer than the last landed watermark exist, then lands exactly the rows
`(last watermark, MAX(watermark) at the start of the extract]` to
`s3://landing/raw/classicmodels/<table>_threshold/dt=YYYY-MM-DD/hour=HH/` (the run's hour) with a
`_manifest.json`. The new watermark is durable on S3 (the manifest and the dataset's
`_state/latest.json`), not in Airflow Variables: it moves only when rows really landed.

**Batch boundary**: the threshold, within the run's hourly data interval. A run waits up to ~55
minutes; if fewer than N rows arrived it is skipped (soft fail) and the rows wait for the next run.

**Trigger** from the UI to land as soon as the threshold is met. A rerun of an interval re-reads
the watermark bounds its manifest recorded, so it lands the same rows again. **Backfill** is not
meaningful for this DAG (catchup is off): a backfilled run lands whatever is new since the last
watermark. Use `mysql_to_s3_hourly` to re-land past windows.

**Connections**: `mysql_source` (type mysql), `aws_default` (landing bucket).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, task_group

from s3lander.assets import landing_alias
from s3lander.dag_defaults import DEFAULT_ARGS, START_DATE, window_params
from s3lander.operators.sql_to_s3 import SqlTableToS3Operator
from s3lander.sensors.sql_threshold import SqlRowThresholdSensor
from s3lander.sql.tables import load_source_config

CONFIG = load_source_config("mysql_tables.yaml")
ALIAS = f"{CONFIG.source}.threshold"  # each mapped land task emits its own table's Asset event

with DAG(
    dag_id="mysql_to_s3_threshold",
    description="Land a MySQL table after a threshold of new rows (deferrable sensor, watermark on S3)",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["mysql", "s3", "threshold", "deferrable"],
    params={**window_params()},
):

    @task_group(group_id="table")
    def threshold_table(table: dict) -> None:
        wait = SqlRowThresholdSensor(
            task_id="wait_for_rows", conn_id=CONFIG.conn_id, table=table, source=CONFIG.source,
            poke_seconds=CONFIG.threshold_poke_seconds, timeout=timedelta(minutes=55), soft_fail=True,
            deferrable=True)
        land = SqlTableToS3Operator(
            task_id="land", conn_id=CONFIG.conn_id, table=table, source=CONFIG.source, window="threshold",
            pool=CONFIG.pool or "default_pool", outlets=[landing_alias(ALIAS)], asset_alias=ALIAS)
        wait >> land

    threshold_table.expand(table=[t.to_dict() for t in CONFIG.with_threshold()])
