"""
### sftp_to_s3: partner files from SFTP inboxes -> S3, complete, verified, exactly once

Lands the files of every source in `include/config/sftp_sources.yaml` (the `acme` partner's
`inbox/` on the `sftp_partner` server by default) byte for byte to
`s3://landing/raw/<source>/<dataset>/dt=YYYY-MM-DD/hour=HH/<original file name>`, with a
`_manifest.json` written last (size and SHA-256 of every file) and a ledger of landed files in
`raw/<source>/<dataset>/_state/sftp_ledger.json`.

**Batch boundary**: the run's data interval. A run takes the files that are complete (size and
mtime settled for `settle_seconds`, or their `.done`/`.ok` marker present) and were modified
before the interval end, and lands them in the interval's partition. A file already landed with
the same content is skipped; a changed file with the same name lands as a new version, never
overwriting the earlier one. After a verified landing the source is archived to
`archive/YYYY-MM-DD/` (or deleted / left, per source). Per source, a deferrable sensor first
waits (in the triggerer, no worker slot held) for complete new files, up to
`sensor_timeout_minutes`; with nothing delivered the landing task is skipped.

**Trigger** a run from the UI ("Trigger DAG w/ config"): without parameters it lands what is
complete now into the last complete hour; `window_start`/`window_end` choose the partition (and
the mtime bound), `sources` restricts it to some sources. **Backfill** with
`airflow backfill create --dag-id sftp_to_s3 --from-date ... --to-date ...`: a rerun of an
interval republishes its earlier files and adds only files modified before its end that were
never landed, so reruns never duplicate or overwrite.

**Connections**: `sftp_partner` (type sftp: host, port, login; `key_file`/`private_key` or a
password; the server's `host_key` or a `known_hosts` file in extra: host keys are verified),
`aws_default` (the landing bucket's account; `endpoint_url` in extra for S3-compatible stores).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TaskGroup

from s3lander.assets import dataset_asset
from s3lander.dag_defaults import DEFAULT_ARGS, START_DATE, window_params
from s3lander.operators.sftp_to_s3 import SftpToS3Operator
from s3lander.sensors.sftp_files import SftpCompleteFilesSensor
from s3lander.sftp.config import load_sources

SOURCES = load_sources()

with DAG(
    dag_id="sftp_to_s3",
    description="SFTP partner inboxes -> S3: complete files only, verified, exactly once (hourly + manual)",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # one writer of each source's ledger at a time
    default_args=DEFAULT_ARGS,
    tags=["sftp", "s3", "files", "hourly"],
    params={
        **window_params(),
        "sources": Param([], type="array", items={"type": "string", "enum": sorted(SOURCES)}, title="Sources",
                         description="Land only these sources (empty: every source of sftp_sources.yaml)"),
    },
):
    for name, src in SOURCES.items():
        with TaskGroup(group_id=name, tooltip=f"{src.conn_id}:{src.inbox} -> raw/{name}/{src.dataset}/"):
            wait = SftpCompleteFilesSensor(
                task_id="wait_for_files", source_name=name, poke_interval=src.poke_seconds,
                timeout=src.sensor_timeout_minutes * 60, soft_fail=True,
            )
            land = SftpToS3Operator(
                task_id="land", source_name=name, outlets=[dataset_asset(name, src.dataset)],
                execution_timeout=timedelta(hours=2),
            )
            wait >> land
