"""The extract's per-batch helpers: the watermark max without pandas, and which Parquet columns
get a dictionary (chosen from the first batch, honoured by the Parquet format)."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3lander.landing.formats import ParquetFormat, get_format
from s3lander.operators.sql_to_s3 import DICTIONARY_SAMPLE_MIN, column_max, dictionary_columns, part_format

UTC = dt.timezone.utc
VALUES = [dt.datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), None,
          dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), dt.datetime(2023, 6, 1, tzinfo=UTC)]


@pytest.mark.parametrize("unit,tz", [("us", "UTC"), ("ms", "UTC"), ("s", "UTC"), ("us", None), ("ms", None)])
def test_column_max_of_timestamps_matches_arrow(unit, tz):
    arr = pa.array(VALUES, type=pa.timestamp("us", tz="UTC")).cast(pa.timestamp(unit, tz=tz), safe=False)
    expected = max(v for v in arr.to_pylist() if v is not None)
    got = column_max(arr)
    assert got == expected and (got.tzinfo is None) == (tz is None)


def test_column_max_of_pre_epoch_only_and_nulls_and_other_types():
    before = [dt.datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC), dt.datetime(1900, 1, 1, tzinfo=UTC)]
    assert column_max(pa.array(before, type=pa.timestamp("us", tz="UTC"))) == before[0]
    assert column_max(pa.array([None, None], type=pa.timestamp("us", tz="UTC"))) is None
    assert column_max(pa.array([3, None, 7, 1])) == 7
    assert column_max(pa.array([dt.date(2024, 1, 2), dt.date(2024, 1, 1)])) == dt.date(2024, 1, 2)


def test_column_max_of_a_utc_timestamp_does_not_import_pandas():
    # the array is built from raw buffers: pa.array() from Python values itself imports pandas
    code = ("import sys, struct, pyarrow as pa, datetime as dt\n"
            "from s3lander.operators.sql_to_s3 import column_max\n"
            "data = pa.py_buffer(struct.pack('<2q', 1_700_000_000_000_000, 1_600_000_000_000_000))\n"
            "a = pa.Array.from_buffers(pa.timestamp('us', tz='UTC'), 2, [None, data])\n"
            "assert 'pandas' not in sys.modules\n"
            "v = column_max(a)\n"
            "assert v == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc), v\n"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == "False"


def _batch(n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "id": pa.array(range(n), type=pa.int64()),
        "status": pa.array(["Shipped", "On Hold", "Cancelled"][i % 3] for i in range(n)),
        "comment": pa.array(f"order {i}" for i in range(n)),
        "flag": pa.array([None] * n, type=pa.int8()),
    })


def test_dictionary_columns_are_the_low_cardinality_ones():
    assert dictionary_columns(_batch(5000)) == ["status", "flag"]


def test_part_format_honours_the_choice_in_the_parquet_file():
    batch = _batch(5000)
    fmt = part_format("parquet", batch)
    assert isinstance(fmt, ParquetFormat) and fmt.use_dictionary == ["status", "flag"]
    buf = io.BytesIO()
    w = fmt.open(buf, batch.schema)
    w.write(batch)
    w.close()
    meta = pq.ParquetFile(io.BytesIO(buf.getvalue())).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert any("DICTIONARY" in e for e in encodings["status"])
    assert not any("DICTIONARY" in e for e in encodings["id"] + encodings["comment"])
    assert pq.read_table(io.BytesIO(buf.getvalue())).to_batches()[0].equals(batch)


def test_part_format_defaults_for_small_first_batches_and_other_formats():
    assert part_format("parquet", _batch(DICTIONARY_SAMPLE_MIN - 1)).use_dictionary is True
    assert part_format("parquet", None).use_dictionary is True
    assert part_format("jsonl.gz", _batch(5000)).name == "jsonl.gz"
    assert get_format("parquet").use_dictionary is True  # the landing format's default is unchanged
