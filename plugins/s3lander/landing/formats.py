"""File formats of landed parts, as small strategy classes chosen by name (``FORMATS``).

A format turns record batches into bytes on a writable sink. Batches are either Arrow
``RecordBatch``es (database extracts) or sequences of JSON-like dicts (API pages, events);
each format accepts both, converting only when it must.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import gzip
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Union

if TYPE_CHECKING:
    import pyarrow as pa

Batch = Union["pa.RecordBatch", Sequence[Mapping[str, Any]]]


def batch_rows(batch: Batch) -> int:
    return batch.num_rows if hasattr(batch, "num_rows") else len(batch)


def batch_slice(batch: Batch, offset: int, length: int) -> Batch:
    if hasattr(batch, "num_rows"):
        return batch.slice(offset, length)
    return batch[offset:offset + length]


def json_default(value: Any) -> Any:
    """JSON for the types a database or an API hands us, without losing precision."""
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact; a float would round
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"value of type {type(value).__name__} is not JSON serializable")


class FormatWriter(ABC):
    """Writes the batches of one part onto a sink."""

    @abstractmethod
    def write(self, batch: Batch) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Finish the file (footer, gzip trailer); does not close the sink."""

    @property
    def schema(self) -> pa.Schema | None:
        return None


class PartFormat(ABC):
    """A file format: its name, extension, content type and writer."""

    name: ClassVar[str]
    ext: ClassVar[str]
    content_type: ClassVar[str]

    @abstractmethod
    def open(self, sink: BinaryIO, schema: pa.Schema | None = None) -> FormatWriter: ...


class _ParquetWriter(FormatWriter):
    def __init__(self, sink: BinaryIO, schema: pa.Schema | None, compression: str,
                 use_dictionary: bool | Sequence[str] = True) -> None:
        self._sink, self._compression, self._use_dictionary = sink, compression, use_dictionary
        self._schema = schema
        self._writer: Any = None

    def write(self, batch: Batch) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(batch, pa.RecordBatch):
            batch = pa.RecordBatch.from_pylist(list(batch), schema=self._schema)
        if self._writer is None:
            self._schema = self._schema or batch.schema
            self._writer = pq.ParquetWriter(self._sink, self._schema, compression=self._compression,
                                            use_dictionary=self._use_dictionary, write_statistics=True)
        if batch.schema != self._schema:
            batch = batch.cast(self._schema)
        self._writer.write_batch(batch)

    def close(self) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:  # an empty part still gets a valid file
            if self._schema is None:
                import pyarrow as pa

                self._schema = pa.schema([])
            self._writer = pq.ParquetWriter(self._sink, self._schema, compression=self._compression)
        self._writer.close()

    @property
    def schema(self) -> pa.Schema | None:
        return self._schema


class ParquetFormat(PartFormat):
    name = "parquet"
    ext = "parquet"
    content_type = "application/vnd.apache.parquet"

    def __init__(self, compression: str = "snappy", use_dictionary: bool | Sequence[str] = True) -> None:
        """:param use_dictionary: dictionary-encode every column (default), none, or the named
            columns only (dictionary encoding of high-cardinality columns costs time and bytes)."""
        self.compression = compression
        self.use_dictionary = use_dictionary if isinstance(use_dictionary, bool) else list(use_dictionary)

    def open(self, sink: BinaryIO, schema: pa.Schema | None = None) -> FormatWriter:
        return _ParquetWriter(sink, schema, self.compression, self.use_dictionary)


try:  # orjson encodes JSON lines about 5x faster than json (measured in bench_rest); optional
    import orjson as _orjson

    _ORJSON_OPTS = _orjson.OPT_APPEND_NEWLINE | _orjson.OPT_PASSTHROUGH_DATETIME
except ImportError:  # pragma: no cover - orjson is in requirements.txt
    _orjson = None


def encode_json_lines(rows: Sequence[Any], dumps: Any = None) -> bytes:
    """One JSON line per row (UTF-8, compact), the same as ``json`` with ``json_default`` gives.

    orjson is used when its output means the same: datetimes go through ``json_default``
    (``isoformat()``, like json); a batch holding ``null`` is encoded by json instead, because
    orjson writes NaN/Infinity as ``null`` where json keeps them; integers beyond 64 bits and
    non-string keys make orjson fail, and json takes the batch. Deterministic either way.
    """
    if _orjson is not None:
        try:
            out = b"".join([_orjson.dumps(r, default=json_default, option=_ORJSON_OPTS) for r in rows])
        except _orjson.JSONEncodeError:
            pass
        else:
            if b"null" not in out:
                return out
    dumps = dumps or json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode
    return ("\n".join(dumps(r) for r in rows) + "\n").encode() if rows else b""


class _JsonLinesWriter(FormatWriter):
    def __init__(self, sink: BinaryIO, level: int) -> None:
        # mtime=0: the same records give the same bytes, so reruns give identical objects
        self._gz = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=level, mtime=0)
        self._schema: pa.Schema | None = None
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode

    def write(self, batch: Batch) -> None:
        if hasattr(batch, "to_pylist"):
            self._schema = self._schema or batch.schema
            batch = batch.to_pylist()
        if batch:
            self._gz.write(encode_json_lines(batch, self._dumps))

    def close(self) -> None:
        self._gz.close()

    @property
    def schema(self) -> pa.Schema | None:
        return self._schema


class JsonLinesGzipFormat(PartFormat):
    name = "jsonl.gz"
    ext = "jsonl.gz"
    content_type = "application/x-ndjson"

    def __init__(self, level: int = 6) -> None:
        self.level = level

    def open(self, sink: BinaryIO, schema: pa.Schema | None = None) -> FormatWriter:
        return _JsonLinesWriter(sink, self.level)


FORMATS: dict[str, type[PartFormat]] = {
    "parquet": ParquetFormat,
    "jsonl.gz": JsonLinesGzipFormat,
    "jsonl": JsonLinesGzipFormat,  # alias: JSON Lines are always gzipped on S3
}


def get_format(name: str, **options: Any) -> PartFormat:
    try:
        return FORMATS[name](**options)
    except KeyError:
        raise ValueError(f"unknown file format {name!r}; choose one of {sorted(FORMATS)}") from None
