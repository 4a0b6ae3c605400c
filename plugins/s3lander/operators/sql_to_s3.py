"""SqlTableToS3Operator: one table's window from a SQL database into the landing zone.

Streams the rows as Arrow record batches (``SqlArrowHook``) into the landing contract's part
writer, so memory stays flat whatever the table size; maps types exactly from the source's
declared column types; reconciles the rows written with ``COUNT(*)`` of the same window
before anything is published; records the max watermark landed and schema changes in the
manifest. Which rows a run reads is a small strategy chosen by name (``WINDOWS``):

- ``interval``: ``[data_interval_start - lookback, data_interval_end)`` on the watermark;
- ``snapshot``: the whole table (small dimensions);
- ``threshold``: ``(last landed watermark, MAX(watermark) now]``, the last watermark read
  from the dataset's ``_state/latest.json`` on S3 (a rerun of an interval re-reads the bounds
  its manifest recorded, so it lands the same rows again).

Very large tables: ``plan_key_ranges()`` splits a window into integer primary-key ranges,
mapped instances of this operator with ``key_range=`` and ``publish=False`` each write
their own parts (``part-rNNN-*``) and return their file entries through XCom, and
``publish_key_ranges()`` publishes them as one manifest once all ranges succeeded.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from s3lander.assets import dataset_asset, emit_dataset_event, landing_alias
from s3lander.hooks.sql_arrow import KeysetReadAhead, SqlArrowHook
from s3lander.landing.intervals import Interval, as_utc, interval_from_context
from s3lander.landing.manifest import ColumnSpec, FileEntry, diff_schema
from s3lander.memory import prepare_task_process
from s3lander.operators.base import LandingOperator
from s3lander.progress import Progress
from s3lander.sql.identifiers import quote_identifier
from s3lander.sql.queries import (
    KeyRange,
    KeysetChunks,
    Predicate,
    Query,
    bounds_query,
    count_query,
    max_query,
    select_query,
    split_key_range,
    window_predicate,
)
from s3lander.sql.tables import TableConfig
from s3lander.sql.types import ColumnPlan, arrow_schema, conform_batch, plan_column

if TYPE_CHECKING:
    from airflow.sdk import Context

    from s3lander.landing.publisher import IntervalPublisher
    from s3lander.landing.writer import PartWriter


#: multipart chunk size and chunks in flight of the part uploads (see ``execute``)
UPLOAD_CHUNK = 5 * 1024 * 1024
UPLOADS_IN_FLIGHT = 2


class ReconciliationError(RuntimeError):
    """Rows written differ from the source's count of the same window: nothing is published."""


class SourceSchemaError(ValueError):
    """The source table no longer matches its config (missing table, watermark or split column)."""


# ---------------------------------------------------------------------------------------------
# Which rows a run reads: small strategies chosen by name
# ---------------------------------------------------------------------------------------------
@dataclass
class WindowBounds:
    predicate: Predicate
    extra: dict[str, Any] = field(default_factory=dict)
    #: the watermark to record when the window landed no rows (threshold: keep the last one)
    floor: str | None = None


class Window:
    name: ClassVar[str]
    #: the bounds read the publisher's state (the S3 side must be ready before them)
    needs_publisher: ClassVar[bool] = False

    def bounds(self, *, cfg: TableConfig, interval: Interval, sql: SqlArrowHook,
               publisher: IntervalPublisher | None) -> WindowBounds:
        raise NotImplementedError


class IntervalWindow(Window):
    """``[start - lookback, end)`` of the run's data interval on the watermark column."""

    name = "interval"

    def bounds(self, *, cfg, interval, sql, publisher):
        w = interval.with_lookback(cfg.lookback)
        return WindowBounds(window_predicate(cfg.watermark, w.start, w.end),
                            {"window": w.to_dict(), "lookback_s": int(cfg.lookback.total_seconds())})


class SnapshotWindow(Window):
    """Every row of the table, as of the run."""

    name = "snapshot"

    def bounds(self, *, cfg, interval, sql, publisher):
        return WindowBounds(Predicate(), {"snapshot": True})


class ThresholdWindow(Window):
    """``(last landed watermark, MAX(watermark) at the start of the run]``."""

    name = "threshold"
    needs_publisher = True

    def bounds(self, *, cfg, interval, sql, publisher):
        assert publisher is not None
        prev = publisher.previous
        if prev is not None and "watermark_to" in prev.extra:  # rerun of this interval: same rows
            lo, hi = prev.extra.get("watermark_from"), prev.extra["watermark_to"]
        else:
            lo = (publisher.latest() or {}).get("watermark")
            since = window_predicate(cfg.watermark, as_utc(lo) if lo else None, None, start_inclusive=False)
            top = sql.scalar(max_query(cfg.table_ref, cfg.watermark, since))
            hi = as_utc(top.replace(tzinfo=None).isoformat() + "+00:00").isoformat() if top else lo
        pred = window_predicate(cfg.watermark, as_utc(lo) if lo else None, as_utc(hi) if hi else None,
                                start_inclusive=False)
        if hi is None:  # empty table and nothing landed yet
            pred = Predicate("1 = 0")
        return WindowBounds(pred, {"watermark_from": lo, "watermark_to": hi}, floor=hi)


WINDOWS: dict[str, type[Window]] = {w.name: w for w in (IntervalWindow, SnapshotWindow, ThresholdWindow)}
MODE_WINDOW = {"incremental": "interval", "snapshot": "snapshot"}


def window_for(cfg: TableConfig, name: str | None) -> Window:
    name = name or MODE_WINDOW[cfg.mode]
    if name not in WINDOWS:
        raise ValueError(f"unknown window {name!r}; choose one of {sorted(WINDOWS)}")
    if name != "snapshot" and not cfg.watermark:
        raise ValueError(f"table {cfg.name!r}: window {name!r} needs a watermark column")
    return WINDOWS[name]()


def plan_columns(sql: SqlArrowHook, cfg: TableConfig) -> list[ColumnPlan]:
    """The select list and exact types, from the source's current columns; refuses a table
    whose watermark or split column has gone (dropped or renamed) with a clear error."""
    source = sql.columns(cfg.table_ref)
    if not source:
        raise SourceSchemaError(f"table {cfg.table_ref!r} does not exist on connection {sql.conn_id!r} "
                                "(or the user may not read it)")
    by_name = {c.name: c for c in source}
    needed = {"watermark": cfg.watermark, "split column": cfg.split.column if cfg.split else None,
              **{f"column {c!r}": c for c in cfg.columns or ()}}
    for what, col in needed.items():
        if col and col not in by_name:
            raise SourceSchemaError(
                f"table {cfg.table_ref!r} has no {what} {col!r} any more (columns now: {sorted(by_name)}); "
                f"it was dropped or renamed: update tables.{cfg.name} in the table config")
    return [plan_column(by_name[c]) for c in (cfg.columns or [c.name for c in source])]


# ---------------------------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------------------------
class SqlTableToS3Operator(LandingOperator):
    """Land one table's window (or one key range of it) from a SQL database to S3.

    :param conn_id: Airflow connection of the source database (``mysql`` type for RDS MySQL) (templated)
    :param table: the table's settings, a ``TableConfig.to_dict()`` mapping (templated, mappable)
    :param window: ``interval`` / ``snapshot`` / ``threshold``; default from the table's mode
    :param key_range: one ``KeyRange.to_dict()`` of a split table (templated, mappable)
    :param publish: publish the manifest (False for key ranges: the caller publishes them together)
    :param dataset: landing dataset name (default the table's ``dataset``)
    :param reader: ``connectorx`` (default, Arrow-native) or ``cursor`` (any DB-API hook)
    :param asset_alias: name of the ``landing_alias`` in this (mapped) task's outlets: the published
        dataset's Asset event is emitted through it (see ``s3lander.assets``)
    """

    template_fields: Sequence[str] = ("source", "conn_id", "table", "key_range", "dataset")
    ui_color = "#d4e6f1"

    def __init__(self, *, conn_id: str = "mysql_source", table: dict[str, Any], window: str | None = None,
                 key_range: dict[str, Any] | None = None, publish: bool = True, dataset: str | None = None,
                 reader: str = "connectorx", asset_alias: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset_alias = asset_alias
        self.conn_id = conn_id
        self.table = table
        self.window = window
        self.key_range = key_range
        self.publish = publish
        self.dataset = dataset
        self.reader = reader

    @cached_property
    def sql(self) -> SqlArrowHook:
        return SqlArrowHook(conn_id=self.conn_id, reader=self.reader)

    def execute(self, context: Context) -> dict[str, Any]:
        cfg = TableConfig.from_dict(self.table)
        skip_unless_selected(cfg, context)
        prepare_task_process()  # before the threads below allocate and pyarrow imports numpy
        dataset = self.dataset or (cfg.threshold_dataset if self.window == "threshold" else cfg.dataset)
        window = window_for(cfg, self.window)
        interval = self.interval(context)
        label = f"{self.landing.location(self.source, dataset).name} {interval.start:%Y-%m-%dT%H}"
        # The S3 side runs on a thread of its own: the client (botocore loads its models: ~0.4 s of
        # CPU) and ``begin()`` (unpublish this interval first: readers never see it half-rewritten).
        # ``extract`` starts it once the source is being read, so it overlaps with the reads, and
        # waits for it before anything is sent to S3 (see ``part_writer``)
        landing = _Once(self.begin_landing, context, dataset, name="s3-begin")
        try:
            columns = plan_columns(self.sql, cfg)
            bounds = window.bounds(cfg=cfg, interval=interval, sql=self.sql,
                                   publisher=landing.result() if window.needs_publisher else None)
            key_range = KeyRange.from_dict(self.key_range) if self.key_range else None
            predicate = bounds.predicate & key_range.predicate() if key_range else bounds.predicate
            result = self.extract(cfg, columns, predicate, landing, label=label,
                                  stem=key_range.stem if key_range else "part")
        except BaseException:
            landing.wait_quietly()
            raise
        publisher = landing.result()
        previous = publisher.previous
        result.update(dataset=dataset, interval=publisher.interval.to_dict(), extra=bounds.extra,
                      range=key_range.to_dict() if key_range else None,
                      previous_schema=[c.__dict__ for c in previous.schema] if previous else None)
        result["watermark"] = result["watermark"] or bounds.floor
        if not self.publish:
            self.log.info("Wrote %s rows of %s range %s (not published: the range publisher does)",
                          result["rows"], cfg.name, key_range)
            return result
        manifest = publish_result(publisher, cfg, [result], log=self.log)
        self.log.info("Published %s rows of %s in %s file(s) to s3://%s/%s", manifest.rows, cfg.name,
                      len(manifest.files), publisher.bucket, publisher.manifest_key)
        if self.asset_alias:
            emit_dataset_event(context, self.asset_alias, self.source, dataset,
                               {"rows": manifest.rows, "interval": publisher.interval.to_dict()})
        return {"manifest": publisher.manifest_key, "rows": manifest.rows, "watermark": manifest.watermark}

    def begin_landing(self, context: Context, dataset: str) -> IntervalPublisher:
        """The interval's publisher, begun (its earlier manifest removed). 5 MiB multipart chunks
        (S3's minimum), at most 2 in flight: ~20 MB of upload buffers whatever the table size;
        ~100 MB/s to S3 is more than the ~40 MB/s of Parquet one task encodes."""
        publisher = self.publisher(context, dataset, chunk_size=UPLOAD_CHUNK, upload_concurrency=UPLOADS_IN_FLIGHT)
        publisher.begin()
        return publisher

    def keyset_read(self, cfg: TableConfig, columns: list[ColumnPlan], predicate: Predicate, label: str, *,
                    on_all_read: Callable[[], None] | None = None) -> KeysetReadAhead | None:
        """The window read in keyset chunks, started now, when that costs no extra read (the server
        would scan the whole table anyway, see ``keyset_column``); else ``None``: ``stream_read``.

        connectorx's stream has no backpressure: its thread reads on into an unbounded queue
        whenever the writer falls behind (measured on a 2-core machine that also runs the
        database: 5M rows in one stream peaked at 276-476 MB from run to run), and it holds the
        GIL while its caller waits for a batch. Keyset chunks of ``KEYSET_CHUNK_BATCHES`` batches,
        each read whole with the GIL released, at most ``READ_AHEAD_CHUNKS`` in memory, cap what is
        read ahead, for about the same read. ``on_all_read`` is called as soon as every row has
        been read (see ``KeysetReadAhead``). A window the server reads through an index (an hour
        of a large table) stays one stream: ordering it by the key could make every chunk scan
        far more than the window."""
        select = [c.select for c in columns]
        key = keyset_column(cfg, columns)
        if key is None or not self.sql.full_scan(select_query(cfg.table_ref, select, predicate)):
            return None
        chunks = KeysetChunks(table=cfg.table_ref, select_list=tuple(select), where=predicate, key=key,
                              rows=KEYSET_CHUNK_BATCHES * cfg.batch_rows, label=label)
        self.log.info("Reading %s in keyset chunks of %s rows on %s", cfg.table_ref, chunks.rows, key)
        return self.sql.keyset_batches(chunks, cfg.batch_rows, on_all_read=on_all_read)

    def count_rows(self, queries: list[Query]) -> int:
        """The sum of ``COUNT(*)`` queries, run at once, each on a connection of its own (the
        ranges of one window: they add up to its count)."""
        if len(queries) == 1:
            return int(self.sql.scalar(queries[0]) or 0)
        with ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="sql-count") as pool:
            return sum(int(n or 0) for n in pool.map(self.sql.scalar, queries))

    def stream_read(self, cfg: TableConfig, columns: list[ColumnPlan], predicate: Predicate,
                    label: str) -> Iterator[Any]:
        """The window read as one stream of batches (the last one short: see ``BatchReader``)."""
        query = select_query(cfg.table_ref, [c.select for c in columns], predicate, label=label)
        return iter(self.sql.batches(query, cfg.batch_rows))

    def part_writer(self, cfg: TableConfig, fmt: Any, schema: Any, landing: _Once, stem: str) -> PartWriter:
        """The publisher's part writer (``IntervalPublisher.part_writer``), opened before the S3
        side is ready if need be: a part opened while the client is still being built takes the
        encoder's first bytes, up to one upload chunk, in an ``_EarlySink``, which opens the part
        on S3 (waiting for ``begin()``) only when it needs to send them. So the first batches are
        encoded (and their read-ahead chunks freed) while the S3 side starts."""
        from s3lander.landing.layout import part_name
        from s3lander.landing.writer import PartWriter

        if landing.done():
            return landing.result().part_writer(fmt, max_rows=cfg.max_rows, max_bytes=cfg.max_bytes, schema=schema,
                                                stem=stem)

        def open_part(index: int) -> Any:
            def on_s3() -> Any:
                return landing.result().open_sink(part_name(index, fmt.ext, stem=stem), fmt.content_type)

            return on_s3() if landing.done() else _EarlySink(on_s3, limit=UPLOAD_CHUNK)

        return PartWriter(fmt=fmt, open_part=open_part, max_rows=cfg.max_rows, max_bytes=cfg.max_bytes, schema=schema)

    def extract(self, cfg: TableConfig, columns: list[ColumnPlan], predicate: Predicate,
                landing: _Once, *, label: str, stem: str = "part") -> dict[str, Any]:
        """Stream the rows into parts, then reconcile with the source count (raises on mismatch).

        ``landing`` gives the begun publisher: started here once the reader reads (the S3 side then
        overlaps with the first reads), and waited for before anything is sent to S3 (see
        ``part_writer``). The reader reads ahead on threads of its own
        (the keyset read-ahead, connectorx's), so this thread only casts, encodes and hands bytes
        to the sink's upload threads. Keyset chunks start before the imports of the batch path and
        the S3 side are ready, which overlap with the first reads; a stream, which reads ahead with
        no bound, only after them (``load_batch_path``). The
        source ``COUNT(*)`` starts once every row has been read (so a row committed mid-read with
        an old watermark is still caught), on its own connection: when the keyset reader has read
        the last chunk (while the last chunks are still being written; split into
        ``COUNT_RANGES`` key ranges counted at once, see ``count_rows``), else when the final batch
        arrives, the only one shorter than ``batch_rows`` (empty when the row count is a multiple
        of it; see ``BatchReader``), or after the loop."""
        from s3lander.memory import arrow_system_pool

        counts: list[Query] = []  # the keyset reader's key ranges, set before it starts the count

        def all_read(reader: KeysetReadAhead) -> None:
            counts.extend(reader.count_queries(COUNT_RANGES))
            count.start()

        count = _Once(lambda: self.count_rows(counts or [count_query(cfg.table_ref, predicate)]), name="sql-count")
        label = f"{label} {stem}"
        batches: Iterator[Any] | KeysetReadAhead | None = self.keyset_read(cfg, columns, predicate, label,
                                                                            on_all_read=all_read)
        landing.start()
        writer = None
        try:
            arrow_system_pool()
            load_batch_path()
            schema = arrow_schema(columns)
            if batches is None:  # a stream has no bound: it starts once its batches can be written at once
                landing.result()
                batches = self.stream_read(cfg, columns, predicate, label)
            progress = Progress(f"{cfg.name} {stem}", logger=self.log)
            top = None
            self.log.info("Reading %s where %s %s", cfg.table_ref, predicate.sql or "(all rows)", predicate.params)
            for batch in batches:
                if batch.num_rows < cfg.batch_rows:  # the final batch: every row is read
                    count.start()
                batch = conform_batch(batch, schema)
                if writer is None:  # the first batch tells which columns dictionary encoding pays for
                    writer = self.part_writer(cfg, part_format(cfg.format, batch), schema, landing, stem)
                if cfg.watermark and batch.num_rows:
                    m = column_max(batch.column(cfg.watermark))
                    top = m if top is None or (m is not None and m > top) else top
                writer.write(batch)
                progress.add(batch.num_rows, nbytes=batch.nbytes)
                del batch  # not kept alive while the next one is read
            count.start()  # the last batch was a full one (or there was none)
            if writer is None:
                writer = self.part_writer(cfg, part_format(cfg.format, None), schema, landing, stem)
            files = writer.close()
        except BaseException:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stop reading ahead before waiting for the count the reader may have started
            if writer is not None:
                writer.abort()
            count.wait_quietly()
            raise
        progress.done()
        source_rows = count.result()
        if source_rows != writer.rows:
            raise ReconciliationError(
                f"{cfg.table_ref}: wrote {writer.rows} rows but the source counts {source_rows} for the same "
                f"window ({predicate.sql or 'all rows'}); nothing was published, a retry re-extracts")
        self.log.info("Reconciled %s: %s rows written = %s counted at the source", cfg.name, writer.rows,
                      source_rows)
        return {"table": cfg.name, "files": [f.to_dict() for f in files], "rows": writer.rows,
                "source_rows": source_rows, "watermark": _iso(top),
                "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
                "source_types": {c.name: c.source_type for c in columns}}


def column_max(arr: Any) -> Any:
    """The largest value of an Arrow array as a Python value (None when all null).

    Timestamps are converted by hand: pyarrow's ``TimestampScalar.as_py()`` imports pandas for
    a time-zone-aware type (it asks ``have_pandas`` before looking at the unit), which cost a
    task ~1 s and ~50 MB of RSS for nothing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    m = pc.max(arr)
    if not m.is_valid:
        return None
    if pa.types.is_timestamp(arr.type):
        per_us = {"s": 1_000_000, "ms": 1_000, "us": 1}.get(arr.type.unit)
        us = m.value * per_us if per_us else m.value // 1_000  # ns: datetime stops at microseconds
        value = _EPOCH + timedelta(microseconds=us)
        return value if arr.type.tz else value.replace(tzinfo=None)
    return m.as_py()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: a column is dictionary-encoded in Parquet when its first batch has at most this share of
#: distinct values (measured on 1M bench rows: dictionary on every column 1.64 s / 44.6 MB,
#: off 0.49 s / 38.1 MB, on the low-cardinality columns only 0.84 s / 36.3 MB)
DICTIONARY_MAX_DISTINCT = 0.1
#: below this many rows in the first batch there is nothing to measure: the format's default
DICTIONARY_SAMPLE_MIN = 1_000


def dictionary_columns(batch: Any) -> list[str]:
    """The columns of ``batch`` whose distinct values are few enough for a Parquet dictionary."""
    import pyarrow.compute as pc

    limit = batch.num_rows * DICTIONARY_MAX_DISTINCT
    return [f.name for f, col in zip(batch.schema, batch.columns)
            if pc.count_distinct(col, mode="all").as_py() <= limit]


def part_format(name: str, first_batch: Any) -> Any:
    """The landing format of a table's parts; Parquet dictionary-encodes only the columns it pays for."""
    from s3lander.landing.formats import ParquetFormat, get_format

    fmt = get_format(name)
    if isinstance(fmt, ParquetFormat) and first_batch is not None and first_batch.num_rows >= DICTIONARY_SAMPLE_MIN:
        fmt = ParquetFormat(compression=fmt.compression, use_dictionary=dictionary_columns(first_batch))
    return fmt


class _Background:
    """One call run on a daemon thread; ``result()`` waits for it and re-raises its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, *args), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Any, *args: Any) -> None:
        try:
            self._value = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to result()
            self._error = e

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait_quietly(self) -> None:
        """The extract failed: let the call finish (its error no longer matters)."""
        self._thread.join()


class _EarlySink(io.RawIOBase):
    """A part's sink while the S3 side is not ready yet: keeps what the encoder writes, up to
    ``limit`` bytes, then opens the real sink (``open_real``, which waits for the S3 side) and
    hands it those bytes and everything after. Nothing reaches S3 before ``open_real`` returns;
    a part smaller than ``limit`` is handed over at ``commit()``, one aborted before is never opened."""

    def __init__(self, open_real: Callable[[], Any], *, limit: int) -> None:
        super().__init__()
        self._open_real, self._limit = open_real, limit
        self._early: list[bytes] = []
        self._size = 0
        self._real: Any = None
        self._aborted = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        n = memoryview(data).nbytes
        if self._aborted:
            return n  # like S3PartSink: an aborted part swallows the encoder's last words
        if self._real is None and self._size + n <= self._limit:
            self._early.append(data if type(data) is bytes else bytes(memoryview(data)))  # pyarrow reuses buffers
        else:
            self._sink().write(data)
        self._size += n
        return n

    def _sink(self) -> Any:
        if self._real is None:
            self._real = self._open_real()
            for data in self._early:
                self._real.write(data)
            self._early = []
        return self._real

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        io.RawIOBase.close(self)  # closing the file object (pyarrow does) must not publish: commit() does

    def commit(self) -> Any:
        return self._sink().commit()

    def abort(self) -> None:
        self._aborted = True
        self._early = []
        if self._real is not None:
            self._real.abort()


class _Once:
    """A ``_Background`` call started at most once, by whichever thread asks first (the keyset
    reader when it has read the last row, else the batch loop)."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str) -> None:
        self._fn, self._args, self._name = fn, args, name
        self._lock = threading.Lock()
        self._call: _Background | None = None

    def start(self) -> None:
        with self._lock:
            if self._call is None:
                self._call = _Background(self._fn, *self._args, name=self._name)

    def result(self) -> Any:
        self.start()
        assert self._call is not None
        return self._call.result()

    def done(self) -> bool:
        """Started and finished (``result()`` will not wait)."""
        with self._lock:
            call = self._call
        return call is not None and call.done()

    def wait_quietly(self) -> None:
        with self._lock:
            call = self._call
        if call is not None:
            call.wait_quietly()


#: rows of one keyset chunk, in batches: ``READ_AHEAD_CHUNKS`` chunks are in memory at most
#: (``FIRST_READ_AHEAD_CHUNKS`` before the first batch is taken). Each chunk is a query the server
#: starts and the reader drains, with the server idle between two: measured on the benchmark
#: (25k-row batches, 2-core machine, interleaved rounds), 4 batches per chunk against 1: 1M rows
#: 1.81-1.86 s in ``execute()`` against 2.05-2.10 s (medians of 7), 5M rows 8.97 s and 8.8 CPU s
#: against 10.50 s and 9.8 CPU s (forked task processes, medians of 3), for a peak of 277-285 MB
#: at 5M against 262-264 (2 batches per chunk: halfway on both)
KEYSET_CHUNK_BATCHES = 4
#: key ranges the reconciling count of a keyset-read window is split into, counted at once on as
#: many connections (server threads) once the last row is read and the reader's connection is
#: closed. The count is what the task waits for after its last part: measured on the 1M-row
#: benchmark table (2-core machine, medians of 5), one COUNT 0.44 s, two ranges 0.28 s, four 0.26 s
COUNT_RANGES = 2
_INTEGER_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


def keyset_column(cfg: TableConfig, columns: list[ColumnPlan]) -> str | None:
    """The column keyset chunks are read by: a single-column integer primary key selected as it
    is; ``None`` when the table has none (it is then read as one stream)."""
    if len(cfg.primary_key) != 1:
        return None
    plan = next((c for c in columns if c.name == cfg.primary_key[0]), None)
    if plan is None or plan.arrow_type not in _INTEGER_TYPES or plan.select != quote_identifier(plan.name):
        return None
    return plan.name


def load_batch_path() -> None:
    """Import what the batch loop uses before a stream starts. connectorx's stream reads ahead with
    no bound while a batch is being handled, so a slow first batch fills its queue: importing
    ``pyarrow.compute`` and ``pyarrow.parquet`` at the first batch (0.26 s) let it queue six
    50k-row batches (+45 MB, the task's peak RSS on the benchmark). Keyset chunks are bounded:
    they start first, and are read while these imports run."""
    import pyarrow.compute  # noqa: F401 - casts, column max, distinct counts
    import pyarrow.parquet  # noqa: F401 - the Parquet part writer


def skip_unless_selected(cfg: TableConfig, context: Context) -> None:
    """Skip this table when the run's ``tables`` param names others (backfilling one table)."""
    wanted = (context.get("params") or {}).get("tables") or []
    if wanted and cfg.name not in wanted:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"table {cfg.name} is not in this run's tables param {wanted}")


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return as_utc(ts if ts.tzinfo else ts.isoformat() + "+00:00").isoformat()


def _max_iso(values: list[str | None]) -> str | None:
    present = [as_utc(v) for v in values if v]
    return max(present).isoformat() if present else None


def publish_result(publisher: IntervalPublisher, cfg: TableConfig, results: list[dict[str, Any]], *,
                   log: Any) -> Any:
    """Publish the parts of one or more extract results (key ranges) as one manifest."""
    schema = [ColumnSpec(**c) for c in results[0]["schema"]]
    for r in results[1:]:
        if r["schema"] != results[0]["schema"]:
            raise SourceSchemaError(f"{cfg.name}: key ranges read different schemas (the table changed during "
                                    "the extract); rerun the interval")
    files = [FileEntry(**f) for r in results for f in r["files"]]
    extra: dict[str, Any] = {"table": cfg.table_ref, **results[0]["extra"],
                             "source_rows": sum(r["source_rows"] for r in results),
                             "source_types": results[0]["source_types"]}
    if len(results) > 1 or results[0].get("range"):
        extra["key_ranges"] = [r["range"] for r in results]
    before = next((r["previous_schema"] for r in results if r.get("previous_schema")), None)
    if before is None:
        before = (publisher.latest() or {}).get("schema")
    if before:
        change = diff_schema([ColumnSpec(**c) for c in before], schema)
        if change.changed:
            log.warning("Schema of %s changed since the last publish: %s", cfg.name, change.to_dict())
            extra["schema_change"] = change.to_dict()
    return publisher.publish(files, fmt=cfg.format, schema=schema,
                             watermark=_max_iso([r["watermark"] for r in results]), extra=extra)


# ---------------------------------------------------------------------------------------------
# Key-range splitting of big tables (called from small @task wrappers in the DAGs)
# ---------------------------------------------------------------------------------------------
def plan_key_ranges(*, conn_id: str, table: dict[str, Any], context: Context) -> list[dict[str, Any]]:
    """Split the run's window of a ``split:`` table into ``parts`` ranges of its integer key
    column, from the MIN/MAX of that column inside the window (deterministic for a rerun)."""
    cfg = TableConfig.from_dict(table)
    skip_unless_selected(cfg, context)
    if cfg.split is None:
        raise ValueError(f"table {cfg.name!r} has no `split:` config")
    sql = SqlArrowHook(conn_id=conn_id)
    plan_columns(sql, cfg)  # clear errors for a missing table / watermark / split column
    bounds = window_for(cfg, None).bounds(cfg=cfg, interval=interval_from_context(context), sql=sql,
                                          publisher=None)
    lo, hi = sql.first(bounds_query(cfg.table_ref, cfg.split.column, bounds.predicate)) or (None, None)
    for v in (lo, hi):
        if v is not None and not isinstance(v, int):
            raise SourceSchemaError(f"{cfg.name}.split.column {cfg.split.column!r} must be an integer column")
    return [r.to_dict() for r in split_key_range(cfg.split.column, lo, hi, cfg.split.parts)]


def publish_key_ranges(*, results: list[dict[str, Any]], table: dict[str, Any], source: str, context: Context,
                       aws_conn_id: str = "aws_default", bucket: str | None = None, log: Any = None) -> dict[str, Any]:
    """Publish all key ranges of one table's interval as one manifest, after checking that every
    range is there exactly once (a missing range means a failed extract: nothing is published)."""
    import logging

    from s3lander.hooks.landing import LandingHook

    log = log or logging.getLogger(__name__)
    cfg = TableConfig.from_dict(table)
    results = sorted(results, key=lambda r: r["range"]["index"])
    expected = results[0]["range"]["count"] if results else None
    if not results or [r["range"]["index"] for r in results] != list(range(expected)):
        got = [r["range"]["index"] for r in results]
        raise ReconciliationError(f"{cfg.name}: key ranges {got} do not cover 0..{(expected or 1) - 1}; "
                                  "nothing was published")
    interval = interval_from_context(context)
    if any(Interval.from_dict(r["interval"]) != interval for r in results):
        raise ReconciliationError(f"{cfg.name}: key ranges were extracted for another interval than {interval}")
    hook = LandingHook(aws_conn_id=aws_conn_id, bucket=bucket)
    publisher = hook.publisher(hook.location(source, results[0]["dataset"]), interval, context["run_id"])
    manifest = publish_result(publisher, cfg, results, log=log)
    log.info("Published %s rows of %s from %s key ranges to s3://%s/%s", manifest.rows, cfg.name, len(results),
             publisher.bucket, publisher.manifest_key)
    return {"manifest": publisher.manifest_key, "rows": manifest.rows, "watermark": manifest.watermark}


# ---------------------------------------------------------------------------------------------
# DAG building: the tasks of one mode's tables (keeps the DAG files declarative)
# ---------------------------------------------------------------------------------------------
def land_tables(config: Any, mode: str, **op_kwargs: Any) -> list[Any]:
    """Tasks landing every ``mode`` table of ``config`` (a ``SourceConfig``): one mapped
    ``land`` task over the plain tables (one mapped instance per table, capped by the source
    pool), and for each ``split:`` table a plan -> mapped key ranges -> publish chain."""
    from airflow.sdk import task

    common = {"conn_id": config.conn_id, "source": config.source, **op_kwargs}
    if config.pool:
        common["pool"] = config.pool
    created: list[Any] = []
    plain = [t.to_dict() for t in config.by_mode(mode, split=False)]
    if plain:
        # one instance per table: each emits its own table's Asset event through the alias
        alias = f"{config.source}.{mode}"
        created.append(SqlTableToS3Operator.partial(task_id="land", map_index_template="{{ task.table.name }}",
                                                    outlets=[landing_alias(alias)], asset_alias=alias,
                                                    **common).expand(table=plain))
    for t in config.by_mode(mode, split=True):
        table = t.to_dict()

        @task(task_id=f"plan_{t.name}", pool=common.get("pool", "default_pool"))
        def plan(table: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
            return plan_key_ranges(conn_id=config.conn_id, table=table, context=context)

        @task(task_id=f"publish_{t.name}", outlets=[dataset_asset(config.source, t.dataset)])
        def publish(results: list[dict[str, Any]], table: dict[str, Any], **context: Any) -> dict[str, Any]:
            return publish_key_ranges(results=list(results), table=table, source=config.source, context=context,
                                      aws_conn_id=common.get("aws_conn_id", "aws_default"),
                                      bucket=common.get("bucket"))

        ranges = SqlTableToS3Operator.partial(
            task_id=f"land_{t.name}_ranges", table=table, publish=False,
            map_index_template="{{ task.key_range.column }} range {{ task.key_range.index }}", **common,
        ).expand(key_range=plan(table))
        created.append(publish(ranges.output, table))
    return created
