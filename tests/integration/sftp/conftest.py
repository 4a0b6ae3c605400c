"""Helpers of the SFTP landing tests: a clean inbox, files with chosen mtimes, an operator run."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

HOUR = timedelta(hours=1)


def current_interval_end() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + HOUR


@pytest.fixture()
def root(sshd: tuple[Any, Any]) -> Path:
    """The sftp session root with an empty inbox/ and archive/ for this test."""
    r = Path(sshd[1].info["root"])
    for d in ("inbox", "archive"):
        shutil.rmtree(r / d, ignore_errors=True)
        (r / d).mkdir()
    return r


def put(root: Path, rel: str, data: bytes, *, age_s: float = 3600.0) -> Path:
    """Drop a file into the inbox with an mtime ``age_s`` seconds ago (old enough to be settled)."""
    p = root / "inbox" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    t = datetime.now(timezone.utc).timestamp() - age_s
    os.utime(p, (t, t))
    return p


@pytest.fixture()
def dataset() -> str:
    """A fresh dataset name per test, so each test has its own ledger and partitions."""
    return f"t{uuid.uuid4().hex[:10]}"


def land(dataset: str, *, end: datetime | None = None, run_id: str = "test", **cfg: Any) -> dict[str, int]:
    """Run SftpToS3Operator.execute for the interval ending at ``end`` with an inline source config."""
    from s3lander.operators.sftp_to_s3 import SftpToS3Operator

    end = end or current_interval_end()
    conf = {"dataset": dataset, "inbox": "inbox", "settle_seconds": 5, "post_action": "archive", **cfg}
    op = SftpToS3Operator(task_id="land", source_name="itest", source_config=conf)
    ctx = {"data_interval_start": end - HOUR, "data_interval_end": end, "run_id": run_id, "params": {}}
    return op.execute(ctx)


def prefix(dataset: str, end: datetime | None = None) -> str:
    end = end or current_interval_end()
    start = end - HOUR
    return f"raw/itest/{dataset}/dt={start:%Y-%m-%d}/hour={start:%H}/"


def manifest(s3: Any, dataset: str, end: datetime | None = None) -> dict[str, Any]:
    import json

    return json.loads(s3.get_object(Bucket="landing", Key=prefix(dataset, end) + "_manifest.json")["Body"].read())


def keys(s3: Any, pfx: str) -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="landing", Prefix=pfx):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def body(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket="landing", Key=key)["Body"].read()
