"""The landing contract against the real S3 server (SeaweedFS): publish, rerun, stale parts, aborts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3lander.landing.formats import get_format
from s3lander.landing.intervals import Interval
from s3lander.landing.layout import DatasetLocation
from s3lander.landing.publisher import IntervalPublisher
from s3lander.landing.sink import MIN_CHUNK

pytestmark = pytest.mark.integration
UTC = timezone.utc
IV = Interval(datetime(2024, 1, 1, 5, tzinfo=UTC), datetime(2024, 1, 1, 6, tzinfo=UTC))


@pytest.fixture
def loc() -> DatasetLocation:
    return DatasetLocation("landing", "raw", "itest", f"ds_{uuid.uuid4().hex[:8]}")


def keys(s3, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="landing", Prefix=prefix).get("Contents", []))


def land(s3, loc, n: int, *, max_rows: int, run_id: str = "run", fmt: str = "parquet", interval: Interval = IV):
    pub = IntervalPublisher(client=s3, location=loc, interval=interval, run_id=run_id, chunk_size=MIN_CHUNK)
    w = pub.part_writer(get_format(fmt), max_rows=max_rows)
    b = pa.record_batch({"id": pa.array(range(n), pa.int64()), "v": pa.array([f"v{i}" for i in range(n)])})
    files = w.write_all([b] if n else [])
    return pub.publish(files, fmt=fmt, watermark=n)


def test_publish_writes_parts_then_manifest_that_verifies(s3, loc):
    m = land(s3, loc, 1000, max_rows=300)
    prefix = loc.partition_prefix(IV)
    assert keys(s3, prefix) == [prefix + "_manifest.json"] + [prefix + f"part-0000{i}.parquet" for i in range(4)]
    doc = json.loads(s3.get_object(Bucket="landing", Key=loc.manifest_key(IV))["Body"].read())
    assert doc["rows"] == 1000 and doc["file_count"] == 4 and doc["interval"] == IV.to_dict()
    for f in m.files:  # every listed part is there with the size and checksum the manifest says
        body = s3.get_object(Bucket="landing", Key=f.key)["Body"].read()
        assert len(body) == f.bytes and hashlib.sha256(body).hexdigest() == f.sha256
        assert pq.read_table(io.BytesIO(body)).num_rows == f.rows


def test_rerun_gives_the_same_objects_and_removes_stale_parts(s3, loc):
    first = land(s3, loc, 1000, max_rows=300, run_id="a")
    again = land(s3, loc, 1000, max_rows=300, run_id="b")
    assert [(f.key, f.sha256) for f in first.files] == [(f.key, f.sha256) for f in again.files]
    smaller = land(s3, loc, 400, max_rows=300, run_id="c")  # fewer rows now: parts 2 and 3 are stale
    prefix = loc.partition_prefix(IV)
    assert keys(s3, prefix) == sorted([prefix + "_manifest.json", *smaller.keys])
    assert smaller.rows == 400


def test_empty_interval_publishes_a_zero_row_manifest(s3, loc):
    land(s3, loc, 10, max_rows=5)
    m = land(s3, loc, 0, max_rows=5)
    assert m.rows == 0 and m.files == []
    assert keys(s3, loc.partition_prefix(IV)) == [loc.manifest_key(IV)]


def test_failed_attempt_unpublishes_and_leaves_no_partial_object(s3, loc):
    land(s3, loc, 100, max_rows=1000)
    pub = IntervalPublisher(client=s3, location=loc, interval=IV, run_id="fails", chunk_size=MIN_CHUNK)
    w = pub.part_writer(get_format("jsonl.gz"), max_rows=10**9)
    rows = [{"blob": os.urandom(1024).hex()} for _ in range(8000)]  # > 5 MiB compressed: a multipart upload

    def source():
        yield rows
        raise ConnectionError("source connection lost")

    with pytest.raises(ConnectionError):
        w.write_all(source())
    prefix = loc.partition_prefix(IV)
    # the old manifest is gone (readers see "not ready"), the half-written part never appeared
    assert loc.manifest_key(IV) not in keys(s3, prefix)
    assert not any(k.endswith(".jsonl.gz") for k in keys(s3, prefix))
    uploads = s3.list_multipart_uploads(Bucket="landing", Prefix=prefix).get("Uploads", [])
    assert uploads == []
    m = land(s3, loc, 100, max_rows=1000, run_id="retry")  # the retry publishes normally
    assert m.rows == 100 and keys(s3, prefix) == sorted([loc.manifest_key(IV), *m.keys])


def test_large_part_goes_multipart_with_matching_checksum(s3, loc):
    pub = IntervalPublisher(client=s3, location=loc, interval=IV, run_id="big", chunk_size=MIN_CHUNK,
                            upload_concurrency=3)
    data = os.urandom(3 * MIN_CHUNK + 12345)
    entry = pub.upload("blob.bin", io.BytesIO(data), read_size=1 << 20)
    body = s3.get_object(Bucket="landing", Key=entry.key)["Body"].read()
    assert body == data and entry.sha256 == hashlib.sha256(data).hexdigest() and entry.bytes == len(data)
    assert "-" in s3.head_object(Bucket="landing", Key=entry.key)["ETag"]  # a multipart ETag


def test_latest_state_only_moves_forward(s3, loc):
    later = Interval(datetime(2024, 1, 1, 7, tzinfo=UTC), datetime(2024, 1, 1, 8, tzinfo=UTC))
    land(s3, loc, 5, max_rows=10, interval=later)
    land(s3, loc, 3, max_rows=10, interval=IV)  # a backfill of an older interval
    pub = IntervalPublisher(client=s3, location=loc, interval=IV, run_id="x")
    latest = pub.latest()
    assert latest["interval"] == later.to_dict() and latest["watermark"] == 5
    assert pub.read_manifest(later).rows == 5 and pub.read_manifest().rows == 3


def test_landing_client_sends_unsigned_bodies_with_a_crc32_the_server_enforces(s3):
    """Over plain HTTP the landing client skips SigV4's payload SHA-256, so the CRC32 must be
    there and must be checked: a body altered after its checksum was computed is refused."""
    import base64
    import zlib

    from botocore.exceptions import ClientError

    from s3lander.hooks.landing import LandingHook

    client = LandingHook(aws_conn_id="aws_default", bucket="landing").client
    seen: dict[str, str] = {}

    def capture(request, **_):  # the request as it goes on the wire
        seen.update({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.PutObject", capture)
    key = f"crc-check/{uuid.uuid4().hex}"
    client.put_object(Bucket="landing", Key=key, Body=b"x" * 1000)
    assert seen["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert seen["x-amz-checksum-crc32"] == base64.b64encode(zlib.crc32(b"x" * 1000).to_bytes(4, "big")).decode()

    def corrupt(request, **_):  # flip a byte after botocore computed the CRC32
        body = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
        request.body = b"y" + body[1:]

    client.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(ClientError, match="BadDigest"):
        client.put_object(Bucket="landing", Key=key + "-bad", Body=b"x" * 1000)
    assert s3.list_objects_v2(Bucket="landing", Prefix=key + "-bad").get("KeyCount", 0) == 0


def test_landing_client_names_its_caller_in_the_provider_user_agent(s3):
    """The caller is given, not searched for on the stack (``caller_s3_hook``): the amazon
    provider's user agent still carries every field, with the operator's class as ``Caller/``."""
    from s3lander.hooks.landing import LandingHook

    client = LandingHook(aws_conn_id="aws_default", bucket="landing", caller="SqlTableToS3Operator").client
    agents: list[str] = []
    client.meta.events.register("before-send.s3.ListObjectsV2", lambda request, **_: agents.append(
        request.headers["User-Agent"].decode() if isinstance(request.headers["User-Agent"], bytes)
        else request.headers["User-Agent"]))
    client.list_objects_v2(Bucket="landing", MaxKeys=1)
    assert len(agents) == 1
    for field in ("Airflow/", "AmPP/", "Caller/SqlTableToS3Operator ", "DagRunKey/"):
        assert field in agents[0], agents[0]


def test_sink_sends_a_crc32c_per_body_and_the_server_refuses_a_corrupted_part(s3, loc):
    """Each body carries the CRC32C the sink computed while the bytes arrived (botocore does not
    read it again); SeaweedFS, as S3, refuses a part whose bytes do not match it, and the failed
    upload leaves nothing at the key."""
    from botocore.exceptions import ClientError

    from s3lander.hooks.landing import LandingHook
    from s3lander.landing.checksums import Crc32c

    client = LandingHook(aws_conn_id="aws_default", bucket="landing").client
    seen: list[dict[str, str]] = []
    client.meta.events.register("before-send.s3.UploadPart", lambda request, **_: seen.append(
        {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}))
    pub = IntervalPublisher(client=client, location=loc, interval=IV, run_id="crc", chunk_size=MIN_CHUNK)
    assert isinstance(pub.body_checksum, Crc32c)
    data = os.urandom(2 * MIN_CHUNK + 100)
    entry = pub.upload("blob.bin", io.BytesIO(data), read_size=1 << 20)
    assert s3.get_object(Bucket="landing", Key=entry.key)["Body"].read() == data
    assert len(seen) >= 2 and all("x-amz-checksum-crc32c" in h and "x-amz-checksum-crc32" not in h for h in seen)

    def corrupt(request, **_):  # flip a byte of the second part after its checksum was computed
        if b"partNumber=2" in request.url.encode():
            body = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
            request.body = bytes([body[0] ^ 1]) + body[1:]

    client.meta.events.register("before-send.s3.UploadPart", corrupt)
    with pytest.raises(ClientError, match="BadDigest"):
        pub.upload("bad.bin", io.BytesIO(data), read_size=1 << 20)
    assert not keys(s3, pub.prefix + "bad.bin")
    assert not s3.list_multipart_uploads(Bucket="landing", Prefix=pub.prefix + "bad.bin").get("Uploads")
