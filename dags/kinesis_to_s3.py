"""
### kinesis_to_s3: browsing-session events from Kinesis to S3, every 5 minutes, exactly once

**What lands where.** Every run drains the Kinesis stream `browsing-sessions` from its
checkpoint, enriches each event (`overall_product_quantity`, `overall_in_shopping_cart`,
`total_different_products`, `processing_timestamp` = the run's interval end) and lands:

- USA sessions in `s3://landing/raw/ecommerce/sessions_usa/`
- all other sessions in `s3://landing/raw/ecommerce/sessions_international/`
- malformed records (not JSON, missing or mistyped fields), with the reason, in
  `s3://landing/raw/ecommerce/sessions_errors/` (they never stop the batch)

partitioned by **event time**: `dt=YYYY-MM-DD/hour=HH/batch=<run interval start>/part-NNNNN.parquet`
with a `_manifest.json` per partition and batch (it records the per-shard sequence ranges).

**Batch boundary.** Time: the run's data interval; records that arrived in the stream before
the interval end belong to the run (`boundary=arrival`), or everything up to the shard tips
(`boundary=drain`). Count and size: `max_records` / `max_bytes` stop the batch early and
leave the rest for the next run. Parts roll at `part_max_rows` / `part_max_bytes`.

**Checkpoints.** `raw/ecommerce/browsing-sessions/_state/checkpoint.json` holds the last
published sequence number per shard; it advances only after the batch is published, so a
failed or retried run re-reads exactly the unpublished records. Resharding is followed
(parents are read to their end before their children).

**Trigger / backfill.** Trigger a run from the UI: it lands the last complete 5-minute
interval. Rerunning (clearing) or backfilling an interval that was already published replays
exactly the sequence ranges recorded for it and rewrites the same objects; a backfill of an
interval that never ran reads from the checkpoint like a normal run (a stream has no history
per interval, only a position). Keep `max_active_runs=1`: one consumer per stream and source.

**Connections.** `kinesis_default` (aws connection of the stream; `endpoint_url` in its extra
for the local moto server), `aws_default` (the landing bucket).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, DeltaDataIntervalTimetable, Param

from s3lander.assets import dataset_asset
from s3lander.dag_defaults import DEFAULT_ARGS, START_DATE, window_params
from s3lander.operators.kinesis_to_s3 import KinesisToS3Operator
from s3lander.stream.routing import ERRORS_DATASET, INTERNATIONAL_DATASET, USA_DATASET

SOURCE = "ecommerce"
STREAM = "browsing-sessions"

with DAG(
    dag_id="kinesis_to_s3",
    doc_md=__doc__,
    schedule=DeltaDataIntervalTimetable(timedelta(minutes=5)),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(minutes=30)},
    tags=["kinesis", "streaming", "micro-batch", "ecommerce"],
    params={
        **window_params(),
        "boundary": Param("arrival", type="string", enum=["arrival", "drain"], title="Batch time boundary",
                          description="arrival: records that arrived before the interval end; "
                                      "drain: everything up to the shard tips when the run reads them"),
        "max_records": Param(500_000, type="integer", minimum=1, title="Max records per batch",
                             description="Stop reading after this many records; the rest waits for the next run"),
        "max_bytes": Param(256 * 1024 * 1024, type="integer", minimum=1, title="Max bytes per batch",
                           description="Stop reading after this many bytes of record data"),
        "part_max_rows": Param(1_000_000, type="integer", minimum=1, title="Rows per part",
                               description="Roll to a new part file after this many rows"),
        "part_max_bytes": Param(64 * 1024 * 1024, type="integer", minimum=1, title="Bytes per part",
                                description="Roll to a new part file after about this many bytes"),
    },
) as dag:
    KinesisToS3Operator(
        task_id="land_stream",
        stream_name=STREAM,
        source=SOURCE,
        boundary="{{ params.boundary }}",
        max_records="{{ params.max_records }}",
        max_bytes="{{ params.max_bytes }}",
        part_max_rows="{{ params.part_max_rows }}",
        part_max_bytes="{{ params.part_max_bytes }}",
        outlets=[dataset_asset(SOURCE, ds) for ds in (USA_DATASET, INTERNATIONAL_DATASET, ERRORS_DATASET)],
    )
