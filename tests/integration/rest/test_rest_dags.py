"""Real DAG runs (dag.test) of the REST DAGs against the demo API and SeaweedFS."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

import pytest

from include.runner import failed_tasks, run_dag

pytestmark = pytest.mark.integration
END = datetime(2024, 1, 2, tzinfo=timezone.utc)
DAY = "raw/spotify/{}/dt=2024-01-01/hour=00/"


def manifest(s3, dataset):
    return json.loads(s3.get_object(Bucket="landing", Key=DAY.format(dataset) + "_manifest.json")["Body"].read())


def rows(s3, m):
    out = []
    for f in m["files"]:
        out += [json.loads(line) for line in
                gzip.decompress(s3.get_object(Bucket="landing", Key=f["key"])["Body"].read()).splitlines()]
    return out


def test_new_releases_fan_out_lands_albums_and_all_their_tracks(api, s3, airflow_db):
    run = run_dag("spotify_new_releases_to_s3", interval_end=END)
    assert run.state == "success", failed_tasks(run)
    albums = rows(s3, manifest(s3, "new_releases"))
    # the demo catalogue: 40 albums spread over 2024-01-01..03, so 20 were updated on the 1st
    assert len(albums) == 20
    assert all("2024-01-01" <= a["updated_at"] < "2024-01-02" for a in albums)
    assert len({a["id"] for a in albums}) == 20
    m = manifest(s3, "album_tracks")
    tracks = rows(s3, m)
    assert len(tracks) == sum(a["total_tracks"] for a in albums) == m["rows"]
    assert {t["album_id"] for t in tracks} == {a["id"] for a in albums}
    # one object (or more) per album, named by album id
    assert {f["key"].rsplit("/", 1)[1].split("-")[1] for f in m["files"]} == {a["id"] for a in albums}
    assert m["extra"]["items"] == 20


def test_config_declared_link_header_dag(api, s3, airflow_db):
    run = run_dag("spotify_catalogue_to_s3", interval_end=END)
    assert run.state == "success", failed_tasks(run)
    m = json.loads(s3.get_object(Bucket="landing",
                                 Key="raw/spotify/catalogue_albums/dt=2024-01-01/hour=00/_manifest.json")["Body"].read())
    got = rows(s3, m)
    assert len(got) == 20 and m["extra"]["pages"] == 2  # per_page 10
    assert [a["updated_at"] for a in got] == sorted(a["updated_at"] for a in got)


def test_fan_out_over_an_empty_day_publishes_zero_row_manifests(api, s3, airflow_db):
    run = run_dag("spotify_new_releases_to_s3", interval_end=END,
                  conf={"window_start": "2023-06-01T00:00:00+00:00", "window_end": "2023-06-02T00:00:00+00:00"})
    assert run.state == "success", failed_tasks(run)
    for dataset in ("new_releases", "album_tracks"):
        key = f"raw/spotify/{dataset}/dt=2023-06-01/hour=00/_manifest.json"
        m = json.loads(s3.get_object(Bucket="landing", Key=key)["Body"].read())
        assert m["rows"] == 0 and m["files"] == []
