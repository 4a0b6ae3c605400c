"""The extract's per-batch helpers: the watermark max without pandas, and which Parquet columns
get a dictionary (chosen from the first batch, honoured by the Parquet format)."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3lander.hooks.sql_arrow import KeysetReadAhead, SqlArrowHook, rebatch
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
            "assert v == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc), v\n")
    assert not _imports_pandas(code)


def _imports_pandas(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter (its own assertions must pass) imports pandas."""
    out = subprocess.run([sys.executable, "-c", code + "print('pandas' in sys.modules)"], capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": ":".join(sys.path)})
    return out.stdout.strip() == "True"


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
    """Serves keyset chunk queries from an in-memory table the way a server and connectorx's whole
    read do: every row of the chunk at once, in batches of ``piece`` rows (not ``batch_rows``)."""

    def __init__(self, table: pa.Table, piece: int = 7) -> None:
        super().__init__(conn_id="unused")
        self.table, self.piece, self.queries = table, piece, []

    def read_all(self, query, batch_rows):
        import re

        self.queries.append(query)
        after = query.params[-1] if "`id` >" in query.sql else None
        limit = int(re.search(r"LIMIT (\d+)$", query.sql).group(1))
        ids = self.table.column("id").to_pylist()
        picked = [i for i, v in enumerate(ids) if after is None or v > after][:limit]
        return self.table.take(pa.array(picked, type=pa.int64())).to_batches(max_chunksize=self.piece)


def _chunks(rows: int = 20) -> Any:
    from s3lander.sql.queries import KeysetChunks, Predicate

    return KeysetChunks(table="t", select_list=("`id`",), where=Predicate(), key="id", rows=rows)


def _ids(n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(10, 10 + 3 * n, 3), type=pa.int64())})


@pytest.mark.parametrize("piece", [3, 7, 20, 64])
@pytest.mark.parametrize("rows", [0, 7, 40, 41, 80, 95])
def test_keyset_batches_read_every_row_once_in_full_batches_and_end_short(rows, piece):
    table = _ids(rows)
    hook = _TableHook(table, piece)
    reader = hook.keyset_batches(_chunks(20), 5)
    got = list(reader)
    reader.close()
    assert [v for b in got for v in b.column("id").to_pylist()] == table.column("id").to_pylist()
    sizes = [b.num_rows for b in got]
    assert all(n == 5 for n in sizes[:-1]) and (not sizes or sizes[-1] < 5)  # the reader contract
    assert len(hook.queries) == rows // 20 + 1  # a full chunk is followed by one more read


def test_keyset_batches_need_whole_batches_per_chunk():
    with pytest.raises(ValueError, match="multiple"):
        _TableHook(pa.table({"id": [1]})).keyset_batches(_chunks(12), 5)


@pytest.mark.parametrize("sizes", [[], [0], [5], [4, 1], [1, 1, 1, 1, 1, 1], [12], [3, 0, 9, 2], [25, 2]])
def test_rebatch_gives_exact_batches_and_a_short_or_empty_final_one(sizes):
    batches, n = [], 0
    for size in sizes:
        batches.append(pa.record_batch({"v": pa.array(range(n, n + size), type=pa.int64())}))
        n += size
    got = list(rebatch(batches, 5))
    assert [v for b in got for v in b.column("v").to_pylist()] == list(range(n))
    assert [b.num_rows for b in got] == [5] * (n // 5) + ([n % 5] if n % 5 or n else [])
    assert all(b.schema == pa.schema([("v", pa.int64())]) for b in got)


def test_rebatch_does_not_import_pandas():
    code = ("import sys, pyarrow as pa\n"
            "from s3lander.hooks.sql_arrow import rebatch\n"
            "b = pa.RecordBatch.from_arrays([pa.nulls(4, pa.int64())], names=['v'])\n"
            "out = list(rebatch([b, b], 4))\n"
            "assert [x.num_rows for x in out] == [4, 4, 0], out\n")
    assert not _imports_pandas(code)


class _CountingRead:
    """A chunk read (of batches of 5) whose calls are counted."""

    def __init__(self, hook: _TableHook) -> None:
        self.hook, self.calls, self.lock = hook, 0, threading.Lock()

    def __call__(self, query):
        with self.lock:
            self.calls += 1
        return self.hook.read_all(query, 5)


def _wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_read_ahead_holds_at_most_first_ahead_then_ahead_chunks():
    """Chunks of 20 rows, batches of 5: four chunks are read before anything is taken, then the
    extra slots are kept as the first chunks are handed on, down to two chunks in memory."""
    read = _CountingRead(_TableHook(_ids(200), piece=20))
    reader = KeysetReadAhead(read=read, chunks=_chunks(20), batch_rows=5, ahead=2, first_ahead=4)
    try:
        _wait_until(lambda: read.calls == 4)
        time.sleep(0.05)
        assert read.calls == 4  # nothing taken yet: four chunks, not more
        batches = iter(reader)
        for _ in range(3 * 4 + 1):  # chunks 1-3 handed on, the first batch of chunk 4 in hand
            next(batches)
        _wait_until(lambda: read.calls == 5)  # chunks 1-2 kept their slots, chunk 3 gave one back
        time.sleep(0.05)
        assert read.calls == 5  # in memory: chunk 4 (being handed on) and chunk 5
        for _ in range(3 * 4):  # chunks 4-6 handed on, the first batch of chunk 7 in hand
            next(batches)
        _wait_until(lambda: read.calls == 8)
        time.sleep(0.05)
        assert read.calls == 8  # chunk 7 and chunk 8: two chunks from now on
        assert sum(b.num_rows for b in batches) == 200 - 6 * 20 - 5
    finally:
        reader.close()


def test_read_ahead_reports_all_read_before_the_caller_reaches_the_end():
    all_read = threading.Event()
    reader = KeysetReadAhead(read=lambda q: _TableHook(_ids(30)).read_all(q, 5), chunks=_chunks(20), batch_rows=5,
                             on_all_read=lambda reader: all_read.set())
    batches = iter(reader)
    first = next(batches)
    assert all_read.wait(5)  # the last (short) chunk is read while the first is still being handed on
    rest = list(batches)
    assert first.num_rows + sum(b.num_rows for b in rest) == 30
    reader.close()


def test_read_ahead_raises_a_read_error_after_the_rows_read_before_it():
    hook = _TableHook(_ids(100))

    def read(query):
        if len(hook.queries) == 2:
            raise RuntimeError("connection lost")
        return hook.read_all(query, 5)

    reader = KeysetReadAhead(read=read, chunks=_chunks(20), batch_rows=5)
    got = []
    with pytest.raises(RuntimeError, match="connection lost"):
        for b in reader:
            got.append(b.num_rows)
    assert sum(got) == 40  # the two chunks read before the failure, then the error
    reader.close()


def test_read_ahead_close_stops_reading():
    read = _CountingRead(_TableHook(_ids(1000), piece=20))
    reader = KeysetReadAhead(read=read, chunks=_chunks(20), batch_rows=5, ahead=2, first_ahead=2)
    next(iter(reader))
    _wait_until(lambda: read.calls == 2)
    reader.close()
    assert not reader._thread.is_alive()
    assert read.calls == 2


def test_once_runs_the_call_once_whichever_thread_starts_it():
    from s3lander.operators.sql_to_s3 import _Once

    calls = []
    once = _Once(lambda: calls.append(1) or len(calls), name="t")
    threads = [threading.Thread(target=once.start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert once.result() == 1 and calls == [1]

    failing = _Once(lambda: 1 / 0, name="t")
    failing.start()
    with pytest.raises(ZeroDivisionError):
        failing.result()
    failing.wait_quietly()


class _RecordingSink(io.RawIOBase):
    """A real sink stand-in: what it was given, and whether it was committed or aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.data, self.committed, self.aborted = bytearray(), False, False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.data += bytes(data)
        return len(data)

    def commit(self) -> str:
        self.committed = True
        return "stored"

    def abort(self) -> None:
        self.aborted = True


def _opener(opened: list[_RecordingSink]):
    """A part opener that records every sink it opens."""
    def open_real() -> _RecordingSink:
        opened.append(_RecordingSink())
        return opened[-1]
    return open_real


def test_early_sink_keeps_the_first_bytes_until_the_limit_then_hands_everything_over():
    from s3lander.operators.sql_to_s3 import _EarlySink

    opened: list[_RecordingSink] = []
    open_real = _opener(opened)
    sink = _EarlySink(open_real, limit=10)
    sink.write(b"abcd")
    sink.write(memoryview(bytearray(b"efgh")))  # a reused buffer: copied
    assert not opened and sink.tell() == 8  # nothing sent before the limit
    sink.write(b"ijkl")  # over the limit: the real sink is opened and given everything, in order
    assert len(opened) == 1 and bytes(opened[0].data) == b"abcdefghijkl" and sink.tell() == 12
    sink.write(b"mn")
    assert bytes(opened[0].data) == b"abcdefghijklmn"
    assert sink.commit() == "stored" and opened[0].committed


def test_early_sink_opens_a_small_part_at_commit_and_never_an_aborted_one():
    from s3lander.operators.sql_to_s3 import _EarlySink

    opened: list[_RecordingSink] = []
    open_real = _opener(opened)
    small = _EarlySink(open_real, limit=100)
    small.write(b"tiny")
    small.commit()
    assert len(opened) == 1 and bytes(opened[0].data) == b"tiny" and opened[0].committed

    aborted = _EarlySink(open_real, limit=100)
    aborted.write(b"partial")
    aborted.abort()
    aborted.write(b"footer")  # the encoder's last words after an abort are swallowed
    assert len(opened) == 1  # never opened: nothing of the aborted part reached the store

    late = _EarlySink(open_real, limit=4)
    late.write(b"12345")
    late.abort()
    assert len(opened) == 2 and opened[1].aborted and not opened[1].committed


def test_early_sink_lets_a_parquet_writer_produce_the_same_file():
    from s3lander.operators.sql_to_s3 import _EarlySink

    batch = _batch(20_000)
    direct = io.BytesIO()
    w = ParquetFormat().open(direct, batch.schema)
    w.write(batch)
    w.close()
    real = _RecordingSink()
    early = _EarlySink(lambda: real, limit=64 * 1024)
    w = ParquetFormat().open(early, batch.schema)
    w.write(batch)
    w.close()
    early.commit()
    assert bytes(real.data) == direct.getvalue() and early.tell() == len(real.data)
