"""
### spotify_new_releases_to_s3: the day's new albums and all their tracks -> S3

Pulls Spotify-style `GET /v1/browse/new-releases` (offset/limit pages, OAuth2 client
credentials) for the albums updated in the run's window and lands them to
`s3://landing/raw/spotify/new_releases/dt=YYYY-MM-DD/hour=00/part-NNNNN.jsonl.gz`; then, one
mapped task per album (dynamic task mapping over the album ids the first task returns), the
album's tracks (`GET /v1/albums/{id}/tracks`, next-URL pages) into
`s3://landing/raw/spotify/album_tracks/dt=YYYY-MM-DD/hour=00/part-<album id>-NNNNN.jsonl.gz`.

**Layout of the fan-out**: every album's tracks are their own objects (named by album id) in
ONE dataset, `album_tracks`, published under one `_manifest.json` per day by
`publish_album_tracks` once every album task succeeded. One dataset per album would create an
unbounded number of datasets, assets and state files; one manifest per day keeps the day
atomic (readers never see half the albums) while each album retries on its own.

**Batch boundary**: the data interval `[start, end)` (daily, 00:00 UTC), sent as
`updated_since`/`updated_before`. Endpoints, paging, auth and rate limit are declared in
`include/config/rest_endpoints.yaml` (`new_releases`, `album_tracks`).

**Trigger** a run from the UI ("Trigger DAG w/ config"): without parameters it lands the last
complete day; `window_start`/`window_end` choose another window. **Backfill** with
`airflow backfill create --dag-id spotify_new_releases_to_s3 --from-date 2024-01-01 --to-date
2024-01-07`: each interval is republished with the same objects (a rerun replaces, never
duplicates). A failed task's retry resumes after the last page it had landed.

**Connections**: `spotify_api` (type http: schema/host/port of the API, login = OAuth2 client
id, password = client secret), `aws_default` (the landing bucket).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable

from s3lander.assets import dataset_asset
from s3lander.dag_defaults import DEFAULT_ARGS, START_DATE, window_params
from s3lander.operators.rest_api_to_s3 import RestApiFanoutPublishOperator, RestApiToS3Operator

with DAG(
    dag_id="spotify_new_releases_to_s3",
    description="Spotify-style new releases and their tracks -> S3 (daily, fan-out per album)",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    default_args={**DEFAULT_ARGS, "retry_delay": timedelta(seconds=30)},
    tags=["rest", "spotify", "s3", "daily", "fan-out"],
    params={**window_params()},
):
    releases = RestApiToS3Operator(
        task_id="new_releases", endpoint="new_releases", outlets=[dataset_asset("spotify", "new_releases")],
    )
    tracks = RestApiToS3Operator.partial(
        task_id="album_tracks", endpoint="album_tracks", publish=False, max_active_tis_per_dagrun=8,
    ).expand(path_params=releases.output)
    RestApiFanoutPublishOperator(
        task_id="publish_album_tracks", source="spotify", dataset="album_tracks", results=tracks.output,
        trigger_rule="none_failed", outlets=[dataset_asset("spotify", "album_tracks")],
    )
