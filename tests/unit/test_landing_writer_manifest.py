"""Part rolling, formats and manifests, with in-memory sinks (no S3)."""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3lander.landing.formats import get_format, json_default
from s3lander.landing.intervals import Interval
from s3lander.landing.manifest import ColumnSpec, FileEntry, Manifest, ManifestError, diff_schema, schema_of
from s3lander.landing.sink import MemorySink
from s3lander.landing.writer import PartWriter

UTC = timezone.utc


def writer(fmt: str, store: dict[str, bytes], **kw) -> PartWriter:
    f = get_format(fmt)
    return PartWriter(fmt=f, open_part=lambda i: MemorySink(f"part-{i:05d}.{f.ext}", store), **kw)


def batch(start: int, n: int) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(range(start, start + n), pa.int64()),
                            "amount": pa.array([Decimal(f"{i}.25") for i in range(start, start + n)],
                                               pa.decimal128(12, 2))})


def test_rolls_at_max_rows_splitting_batches_exactly():
    store: dict[str, bytes] = {}
    w = writer("parquet", store, max_rows=250)
    files = w.write_all(batch(i, 100) for i in range(0, 1000, 100))
    assert [f.rows for f in files] == [250, 250, 250, 250]
    ids = []
    for f in files:
        t = pq.read_table(io.BytesIO(store[f.key]))
        assert t.schema.field("amount").type == pa.decimal128(12, 2)  # decimals stay decimal
        ids += t.column("id").to_pylist()
    assert ids == list(range(1000))


def test_rolls_at_max_bytes():
    store: dict[str, bytes] = {}
    w = writer("jsonl.gz", store, max_bytes=1, max_rows=10**9)  # every batch closes a part
    files = w.write_all([[{"a": i}] for i in range(3)])
    assert len(files) == 3 and all(f.rows == 1 for f in files)
    assert [json.loads(gzip.decompress(store[f.key])) for f in files] == [{"a": 0}, {"a": 1}, {"a": 2}]


def test_jsonl_is_deterministic_and_lossless():
    rows = [{"price": Decimal("12.30"), "at": datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC), "blob": b"\x00\xff",
             "name": "Łódź 😀"}]
    a: dict[str, bytes] = {}
    b: dict[str, bytes] = {}
    writer("jsonl.gz", a).write_all([rows])
    writer("jsonl.gz", b).write_all([rows])
    assert a == b  # gzip mtime fixed: identical bytes on a rerun
    line = json.loads(gzip.decompress(a["part-00000.jsonl.gz"]))
    assert line == {"price": "12.30", "at": "2024-01-01T00:00:00.000005+00:00", "blob": "AP8=", "name": "Łódź 😀"}


def test_json_default_refuses_unknown_types():
    with pytest.raises(TypeError, match="object"):
        json_default(object())


def test_empty_input_writes_no_part_unless_asked():
    store: dict[str, bytes] = {}
    assert writer("parquet", store).write_all([]) == []
    w = writer("parquet", store, schema=pa.schema([("id", pa.int64())]))
    files = w.close(empty_part=True)
    assert len(files) == 1 and files[0].rows == 0
    assert pq.read_table(io.BytesIO(store[files[0].key])).schema.names == ["id"]


def test_dicts_to_parquet_and_on_part_callback():
    store: dict[str, bytes] = {}
    seen: list[FileEntry] = []
    w = writer("parquet", store, max_rows=2, on_part=seen.append)
    w.write_all([[{"x": 1}, {"x": 2}, {"x": 3}]])
    assert [e.rows for e in seen] == [2, 1]
    assert w.schema is not None and w.schema.names == ["x"]


def test_abort_discards_the_open_part():
    store: dict[str, bytes] = {}
    w = writer("parquet", store, max_rows=10)

    def boom():
        yield batch(0, 15)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        w.write_all(boom())
    assert list(store) == ["part-00000.parquet"]  # the finished part; part-00001 never committed


def test_start_index_resumes_numbering():
    store: dict[str, bytes] = {}
    writer("jsonl.gz", store, start_index=7).write_all([[{"a": 1}]])
    assert list(store) == ["part-00007.jsonl.gz"]


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError, match="max_rows"):
        writer("parquet", {}, max_rows=0)


def test_unknown_format_names_the_input():
    with pytest.raises(ValueError, match="'csv'"):
        get_format("csv")


def _manifest() -> Manifest:
    iv = Interval(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC))
    files = [FileEntry("raw/a/b/dt=2024-01-01/hour=00/part-00000.parquet", 10, 3, "ab" * 32),
             FileEntry("raw/a/b/dt=2024-01-01/hour=00/part-00001.parquet", 7, 2, "cd" * 32)]
    return Manifest(dataset="raw.a.b", location="s3://landing/raw/a/b/", interval=iv, run_id="r", format="parquet",
                    files=files, schema=[ColumnSpec("id", "int64", False)], watermark="2024-01-01T00:59:59+00:00")


def test_manifest_round_trip_and_totals():
    m = _manifest()
    d = json.loads(m.to_json())
    assert (d["rows"], d["bytes"], d["file_count"]) == (5, 17, 2)
    back = Manifest.from_json(m.to_json())
    assert back.files == m.files and back.interval == m.interval and back.watermark == m.watermark


def test_manifest_with_wrong_totals_is_rejected():
    d = json.loads(_manifest().to_json())
    d["rows"] = 99
    with pytest.raises(ManifestError, match="totals"):
        Manifest.from_json(json.dumps(d), source="s3://x/_manifest.json")
    with pytest.raises(ManifestError, match="s3://y"):
        Manifest.from_json(b"{not json", source="s3://y")


def test_schema_diff():
    old = schema_of(pa.schema([("id", pa.int32()), ("name", pa.string()), ("gone", pa.bool_())]))
    new = schema_of(pa.schema([("id", pa.int64()), ("name", pa.string()), ("added", pa.float64())]))
    change = diff_schema(old, new)
    assert change.changed
    assert change.added == ("added",) and change.removed == ("gone",)
    assert change.retyped == (("id", "int32", "int64"),)
    assert not diff_schema(old, old).changed
