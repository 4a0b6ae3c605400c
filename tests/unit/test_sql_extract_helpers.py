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

from s3lander.hooks.sql_arrow import SqlArrowHook
from s3lander.landing.formats import ParquetFormat, get_format
from s3lander.operators.sql_to_s3 import (
    DICTIONARY_SAMPLE_MIN,
    column_max,
    dictionary_columns,
    keyset_column,
    part_format,
)
from s3lander.sql.tables import TableConfig
from s3lander.sql.types import ColumnPlan

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


def _plan(name: str, arrow: str, select: str | None = None) -> ColumnPlan:
    return ColumnPlan(name=name, select=select or f"`{name}`", arrow_type=arrow, nullable=False, source_type="x")


def test_keyset_column_is_a_single_integer_primary_key_selected_as_it_is():
    cols = [_plan("id", "int64"), _plan("code", "string"), _plan("t", "duration[us]", "CAST(x) AS `t`"),
            _plan("n", "uint32")]
    table = dict(name="t", watermark="updated_at")
    assert keyset_column(TableConfig(primary_key=("id",), **table), cols) == "id"
    assert keyset_column(TableConfig(primary_key=("n",), **table), cols) == "n"
    assert keyset_column(TableConfig(primary_key=("code",), **table), cols) is None  # not an integer
    assert keyset_column(TableConfig(primary_key=("t",), **table), cols) is None  # an expression
    assert keyset_column(TableConfig(primary_key=("id", "code"), **table), cols) is None  # composite
    assert keyset_column(TableConfig(**table), cols) is None


class _TableHook(SqlArrowHook):
    """Serves keyset chunk queries from an in-memory table the way a server and connectorx do:
    full batches, then the rest, then an empty batch when the rows are a multiple of the batch."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__(conn_id="unused")
        self.table, self.queries = table, []

    def batches(self, query, schema, batch_rows):
        import re

        self.queries.append(query)
        after = query.params[-1] if "`id` >" in query.sql else None
        limit = int(re.search(r"LIMIT (\d+)$", query.sql).group(1))
        ids = self.table.column("id").to_pylist()
        picked = [i for i, v in enumerate(ids) if after is None or v > after][:limit]
        rows = self.table.take(pa.array(picked, type=pa.int64()))
        batches = rows.to_batches(max_chunksize=batch_rows)
        if rows.num_rows % batch_rows == 0:
            batches.append(pa.RecordBatch.from_pylist([], schema=rows.schema))
        return iter(batches)


@pytest.mark.parametrize("rows", [0, 7, 40, 41, 80, 95])
def test_keyset_batches_read_every_row_once_in_full_batches_and_end_short(rows):
    from s3lander.sql.queries import KeysetChunks, Predicate

    table = pa.table({"id": pa.array(range(10, 10 + 3 * rows, 3), type=pa.int64())})
    hook = _TableHook(table)
    chunks = KeysetChunks(table="t", select_list=("`id`",), where=Predicate(), key="id", rows=20)
    got = list(hook.keyset_batches(chunks, table.schema, 5))
    assert [v for b in got for v in b.column("id").to_pylist()] == table.column("id").to_pylist()
    sizes = [b.num_rows for b in got]
    assert all(n == 5 for n in sizes[:-1]) and (not sizes or sizes[-1] < 5)  # the reader contract
    assert len(hook.queries) == rows // 20 + 1  # a full chunk is followed by one more read


def test_keyset_batches_need_whole_batches_per_chunk():
    from s3lander.sql.queries import KeysetChunks, Predicate

    chunks = KeysetChunks(table="t", select_list=("`id`",), where=Predicate(), key="id", rows=12)
    with pytest.raises(ValueError, match="multiple"):
        list(_TableHook(pa.table({"id": [1]})).keyset_batches(chunks, None, 5))
