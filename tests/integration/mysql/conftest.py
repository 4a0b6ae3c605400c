"""Fixtures of the MySQL -> S3 integration tests: seeded classicmodels, a context factory,
helpers that read back what landed on the (real, SeaweedFS) S3 server."""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
END = datetime(2024, 1, 3, tzinfo=timezone.utc)
ORDERS = 4800  # 48 h / 4800 = one row every 36 s: 100 rows per hour, one exactly on each hour boundary


@pytest.fixture(scope="session")
def seeded(mariadb: Any, s3: Any) -> Any:
    """classicmodels with dimensions and 4,800 orders over 2024-01-01..2024-01-03 (UTC)."""
    from include.sample_data import classicmodels

    naive = (START.replace(tzinfo=None), END.replace(tzinfo=None))
    classicmodels.seed_dimensions(mariadb.admin_sql, at=naive[0])
    classicmodels.seed_facts(mariadb.admin_sql, orders=ORDERS, start=naive[0], end=naive[1])
    return mariadb


def ctx(start: datetime, end: datetime, run_id: str = "manual__test", **params: Any) -> dict[str, Any]:
    """The slice of a task context the operators read."""
    return {"data_interval_start": start, "data_interval_end": end, "run_id": run_id, "params": params}


def unique_source() -> str:
    """A landing source per test, so tests never see each other's objects."""
    return "t" + uuid.uuid4().hex[:10]


def sql_rows(mariadb: Any, sql: str) -> list[list[str]]:
    out = mariadb.admin_sql(sql, database="classicmodels")
    return [line.split("\t") for line in out.splitlines() if line]


def manifest(s3: Any, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket="landing", Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def list_keys(s3: Any, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="landing", Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def read_table(s3: Any, m: dict[str, Any]) -> Any:
    """All parts of a published manifest as one Arrow table (after checking sizes and SHA-256)."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for f in m["files"]:
        raw = s3.get_object(Bucket="landing", Key=f["key"])["Body"].read()
        assert len(raw) == f["bytes"] and hashlib.sha256(raw).hexdigest() == f["sha256"], f["key"]
        tables.append(pq.read_table(io.BytesIO(raw)))
    return pa.concat_tables(tables) if tables else None
