"""Upload-body checksums: the CRC32C strategy, and what the sink sends with each body."""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from s3lander.landing.checksums import Crc32c
from s3lander.landing.sink import MIN_CHUNK, S3PartSink


def crc32c_reference(data: bytes) -> int:
    """Bitwise CRC32C (Castagnoli, reflected 0x82F63B78): slow, independent of the C extension."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.fixture(scope="module")
def crc() -> Crc32c:
    native = Crc32c.native()
    assert native is not None, "google-crc32c's C extension is a runtime requirement (requirements.txt)"
    return native


def test_crc32c_matches_the_standard_check_value_and_extends(crc):
    assert crc.extend(0, b"123456789") == 0xE3069283  # the CRC-32C check value
    data = os.urandom(5000)
    assert crc.extend(crc.extend(0, data[:1234]), data[1234:]) == crc32c_reference(data)
    assert crc.encode(0xE3069283) == base64.b64encode(bytes.fromhex("e3069283")).decode()


class RecordingClient:
    """An S3 client that records each call's arguments (bodies included)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_multipart_upload(self, **kw: Any) -> dict[str, str]:
        self.calls.append(("create", kw))
        return {"UploadId": "u1"}

    def upload_part(self, **kw: Any) -> dict[str, str]:
        # a copy: the sink reuses a part's buffer once this call has returned (as botocore is done with it)
        self.calls.append(("part", {**kw, "Body": bytes(kw["Body"])}))
        return {"ETag": f"e{kw['PartNumber']}"}

    def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("complete", kw))
        return {}

    def put_object(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("put", {**kw, "Body": bytes(kw["Body"])}))
        return {}


def test_sink_sends_each_part_with_the_crc32c_of_exactly_its_bytes(crc):
    client = RecordingClient()
    data = os.urandom(2 * MIN_CHUNK + 777)
    with ThreadPoolExecutor(2) as ex:
        sink = S3PartSink(client=client, bucket="b", key="k", executor=ex, chunk_size=MIN_CHUNK, checksum=crc)
        for i in range(0, len(data), 300_001):  # writes that straddle part boundaries
            sink.write(memoryview(data[i:i + 300_001]))  # a buffer, as pyarrow hands over
        sink.commit()
    kinds = [k for k, _ in client.calls]
    assert kinds[0] == "create" and kinds[-1] == "complete" and kinds.count("part") >= 2
    assert client.calls[0][1]["ChecksumAlgorithm"] == "CRC32C"
    parts = sorted((kw for k, kw in client.calls if k == "part"), key=lambda kw: kw["PartNumber"])
    assert b"".join(kw["Body"] for kw in parts) == data
    for kw in parts:  # whole-body value (checked against the reference above) = the sink's running one
        assert kw["ChecksumCRC32C"] == crc.encode(crc.extend(0, kw["Body"]))
    listed = client.calls[-1][1]["MultipartUpload"]["Parts"]
    assert [p["ChecksumCRC32C"] for p in listed] == [kw["ChecksumCRC32C"] for kw in parts]


def test_small_object_is_one_put_with_its_crc32c_and_without_a_strategy_botocore_decides(crc):
    client = RecordingClient()
    with ThreadPoolExecutor(1) as ex:
        sink = S3PartSink(client=client, bucket="b", key="k", executor=ex, checksum=crc)
        sink.write(b"hello ")
        sink.write(b"world")
        sink.commit()
        plain = RecordingClient()
        other = S3PartSink(client=plain, bucket="b", key="k2", executor=ex)
        other.write(b"hello world")
        other.commit()
    ((kind, kw),) = client.calls
    assert kind == "put" and kw["ChecksumCRC32C"] == crc.encode(crc32c_reference(b"hello world"))
    ((_, kw2),) = plain.calls
    assert not any(k.startswith("Checksum") for k in kw2)
