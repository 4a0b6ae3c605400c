"""Fixtures of the Kinesis integration tests: moto's Kinesis server (session) and S3 helpers."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import start_service


@pytest.fixture(scope="session")
def kinesis(stack: Any) -> tuple[Any, Any]:
    """moto server with the demo stream; returns (service, state). ``svc.client(state)`` is boto3."""
    return start_service(stack, "kinesis")


@pytest.fixture(scope="session")
def kinesis_client(kinesis: tuple[Any, Any]) -> Any:
    svc, state = kinesis
    return svc.client(state)


@pytest.fixture
def fresh_stream(kinesis_client: Any) -> Callable[..., str]:
    """Create a new stream (unique name) for one test; returns its name."""
    from include.stack.services.kinesis import ensure_stream

    def make(shards: int = 2) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        ensure_stream(kinesis_client, name, shards=shards)
        return name

    return make


def run_batch(stream: str, source: str, start: datetime, end: datetime, run_id: str | None = None,
              **options: Any) -> dict[str, Any]:
    """Run KinesisToS3Operator once for [start, end) in-process (what a task does)."""
    from s3lander.operators.kinesis_to_s3 import KinesisToS3Operator

    op = KinesisToS3Operator(task_id="land_stream", stream_name=stream, source=source, **options)
    context = {"data_interval_start": start, "data_interval_end": end, "params": {},
               "run_id": run_id or f"test__{start.isoformat()}"}
    return op.execute(context)


def manifests(s3: Any, source: str, dataset: str | None = None) -> dict[str, dict[str, Any]]:
    """Every published manifest under raw/<source>/[<dataset>/], by key."""
    prefix = f"raw/{source}/" + (f"{dataset}/" if dataset else "")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="landing", Prefix=prefix):
        for o in page.get("Contents", []):
            if o["Key"].endswith("/_manifest.json"):
                out[o["Key"]] = json.loads(s3.get_object(Bucket="landing", Key=o["Key"])["Body"].read())
    return out


def landed_rows(s3: Any, source: str, dataset: str) -> list[dict[str, Any]]:
    """The rows of every published part of a dataset (only parts listed in manifests count)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for m in manifests(s3, source, dataset).values():
        for f in m["files"]:
            body = s3.get_object(Bucket="landing", Key=f["key"])["Body"].read()
            if f["key"].endswith(".parquet"):
                part = pq.read_table(io.BytesIO(body)).to_pylist()
            else:
                part = [json.loads(line) for line in gzip.decompress(body).splitlines() if line]
            assert len(part) == f["rows"], f"{f['key']}: manifest says {f['rows']} rows, part has {len(part)}"
            rows.extend(part)
    return rows


def checkpoint(s3: Any, source: str, stream: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket="landing", Key=f"raw/{source}/{stream}/_state/checkpoint.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)
