"""Reliability of RestApiToS3Operator against the running demo API and SeaweedFS.

The operator runs in-process (``execute`` with an explicit interval) so each scenario takes a
second or two; faults are switched on in the real server through its admin endpoint.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from s3lander.config import load_yaml
from s3lander.operators.rest_api_to_s3 import RestApiToS3Operator
from s3lander.rest.client import RestApiError
from s3lander.rest.config import CONFIG_FILE, build_endpoint

pytestmark = pytest.mark.integration
DAY = (datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc))
BUCKET = "landing"


def endpoint(dataset: str, **overrides: Any):
    """The new-releases endpoint with 3 albums per page (20 albums on the day = 7 pages), fast retries."""
    doc = load_yaml(CONFIG_FILE)
    raw = {"source": "spotify", "path": "/v1/browse/new-releases", "records": "albums.items",
           "paginator": {"type": "offset", "limit": 3, "total_path": "albums.total"},
           "incremental": {"start_param": "updated_since", "end_param": "updated_before"},
           "retry": {"max_attempts": 5, "backoff_base_s": 0.05, "backoff_max_s": 0.5, "max_retry_after_s": 5},
           "rate_limit": None, "timeout_s": 5, "pages_per_part": 2, "dataset": dataset, **overrides}
    return build_endpoint("test", raw, sources=doc["sources"], defaults=doc.get("defaults"))


def land(cfg, *, interval=DAY, run_id="manual__1") -> Any:
    op = RestApiToS3Operator(task_id="land", endpoint="new_releases")
    op.config = cfg  # the test's endpoint instead of the file's
    return op.execute({"run_id": run_id, "params": {}, "data_interval_start": interval[0],
                       "data_interval_end": interval[1]})


def prefix(dataset: str, day: str = "2024-01-01") -> str:
    return f"raw/spotify/{dataset}/dt={day}/hour=00/"


def manifest(s3, dataset: str, day: str = "2024-01-01") -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=prefix(dataset, day) + "_manifest.json")["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def records(s3, m: dict) -> list[dict]:
    out = []
    for f in m["files"]:
        body = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=f["key"])["Body"].read())
        out += [json.loads(line) for line in body.splitlines()]
    return out


def keys(s3, dataset: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"raw/spotify/{dataset}/")
                  .get("Contents", []))


def fresh() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def assert_complete(s3, ds: str) -> dict:
    m = manifest(s3, ds)
    assert m is not None
    got = records(s3, m)
    assert len(got) == 20 == m["rows"]
    assert len({r["id"] for r in got}) == 20  # no duplicates
    assert all("2024-01-01" <= r["updated_at"] < "2024-01-02" for r in got)
    return m


def test_token_expiry_mid_run_renews_before_expiry_and_once_on_401(api, s3):
    api.config(token_ttl=1.0)
    # every page takes 0.25 s, so the 1-s tokens run out mid-run; page 3's token is also revoked by force
    api.faults({"kind": "slow", "seconds": 0.25, "times": -1, "path": "new-releases"},
               {"kind": "expire_token", "params": {"offset": "6"}, "times": 1})
    ds = fresh()
    land(endpoint(ds))
    assert_complete(s3, ds)
    st = api.stats()
    assert st["tokens_issued"] >= 3  # first token, renewals before expiry, one after the forced 401
    assert st["unauthorized"] == 1  # only the forced one: expiry never caused a 401


def test_429_storm_with_retry_after_seconds_and_http_date(api, s3):
    api.faults({"kind": "429", "retry_after": 1, "times": 2, "params": {"offset": "3"}},
               {"kind": "429", "retry_after": "date", "times": 2, "params": {"offset": "9"}})
    ds = fresh()
    land(endpoint(ds))
    m = assert_complete(s3, ds)
    assert m["extra"]["throttled_429"] == 4 and api.stats()["rate_limited"] == 4


def test_client_rate_limit_provokes_no_429(api, s3):
    api.config(rate_limit=3, rate_window=1.0)
    ds = fresh()
    land(endpoint(ds, rate_limit={"requests": 3, "per_seconds": 1}))
    assert_complete(s3, ds)
    assert api.stats()["rate_limited"] == 0


def test_5xx_burst_is_retried_and_persistent_5xx_fails_naming_url_and_page(api, s3):
    api.faults({"kind": "status", "status": 503, "times": 3, "params": {"offset": "3"}},
               {"kind": "status", "status": 502, "times": 1, "params": {"offset": "12"}})
    ds = fresh()
    assert land(endpoint(ds))["rows"] == 20
    assert_complete(s3, ds)

    api.faults({"kind": "status", "status": 500, "times": -1, "params": {"offset": "9"}})
    ds = fresh()
    with pytest.raises(RestApiError) as e:
        land(endpoint(ds))
    msg = str(e.value)
    assert "page 4" in msg and "/v1/browse/new-releases" in msg and "offset=9" in msg and "5 attempts" in msg
    assert "HTTP 500" in msg
    assert manifest(s3, ds) is None  # nothing published


def test_timeouts_are_retried(api, s3):
    api.faults({"kind": "slow", "seconds": 1.5, "times": 2, "params": {"offset": "6"}})
    ds = fresh()
    land(endpoint(ds, timeout_s=0.5))
    assert_complete(s3, ds)
    assert api.stats()["faults_fired"] == 2


@pytest.mark.parametrize("kind", ["non_json", "html", "truncated"])
def test_bad_page_fails_clearly_and_publishes_nothing(api, s3, kind):
    api.faults({"kind": kind, "params": {"offset": "6"}, "times": -1})
    ds = fresh()
    with pytest.raises(RestApiError) as e:
        land(endpoint(ds))
    msg = str(e.value)
    assert "page 3" in msg and "offset=6" in msg and "not JSON" in msg
    if kind == "html":
        assert "text/html" in msg and "<!DOCTYPE html>" in msg
    assert manifest(s3, ds) is None
    assert not [k for k in keys(s3, ds) if k.endswith("_manifest.json")]


def test_empty_result_publishes_a_zero_row_manifest(api, s3):
    ds = fresh()
    empty_day = (datetime(2023, 6, 1, tzinfo=timezone.utc), datetime(2023, 6, 2, tzinfo=timezone.utc))
    out = land(endpoint(ds), interval=empty_day)
    m = manifest(s3, ds, "2023-06-01")
    assert out["rows"] == 0 and m["rows"] == 0 and m["files"] == []


def test_rerun_of_the_interval_gives_the_same_objects(api, s3):
    ds = fresh()
    land(endpoint(ds), run_id="scheduled__1")
    first = manifest(s3, ds)
    before = keys(s3, ds)
    land(endpoint(ds), run_id="manual__rerun")
    second = manifest(s3, ds)
    assert keys(s3, ds) == before
    assert [(f["key"], f["sha256"], f["rows"]) for f in first["files"]] == \
        [(f["key"], f["sha256"], f["rows"]) for f in second["files"]]
    assert len(first["files"]) == 4  # 7 pages, 2 pages per part


def test_retry_after_failure_on_page_k_resumes_without_duplicates_or_gaps(api, s3):
    clean = fresh()
    land(endpoint(clean))
    reference = manifest(s3, clean)

    ds = fresh()
    # page 6 (offset 15) fails for good: pages 1-4 are landed as 2 parts and checkpointed, page 5 is lost
    api.faults({"kind": "status", "status": 500, "times": -1, "params": {"offset": "15"}})
    with pytest.raises(RestApiError, match="page 6"):
        land(endpoint(ds))
    assert manifest(s3, ds) is None
    assert any("/_state/checkpoint." in k for k in keys(s3, ds))

    api.admin("reset")
    land(endpoint(ds), run_id="manual__1")  # the task's retry: same run, same interval
    m = assert_complete(s3, ds)
    # only pages 5-7 were fetched again (plus one token request)
    assert api.stats()["status"]["200"] == 3 + 1
    assert m["extra"]["resumed_after_page"] == 4
    assert [(f["key"].rsplit("/", 1)[1], f["sha256"]) for f in m["files"]] == \
        [(f["key"].rsplit("/", 1)[1], f["sha256"]) for f in reference["files"]]
    assert not any("/_state/checkpoint." in k for k in keys(s3, ds))  # dropped after publishing
