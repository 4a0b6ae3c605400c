"""Rolling part writer: record batches in, bounded parts out.

The writer owns no storage: it asks ``open_part(index)`` for a sink (an S3 multipart
upload in production, memory in unit tests), streams batches into the current part through
a format, and rolls to the next part at ``max_rows`` rows or ``max_bytes`` bytes. Memory is
bounded by one batch plus the sink's buffer, whatever the input size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from s3lander.landing.formats import Batch, FormatWriter, PartFormat, batch_rows, batch_slice
from s3lander.landing.manifest import FileEntry

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredObject:
    key: str
    bytes: int
    sha256: str


class PartSink(Protocol):
    """A writable destination for one part."""

    key: str

    def write(self, data: bytes) -> int: ...

    def tell(self) -> int: ...

    def flush(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    def commit(self) -> StoredObject:
        """Make the object durable at its key; return what was stored."""

    def abort(self) -> None:
        """Discard everything written; nothing appears at the key."""


OpenPart = Callable[[int], PartSink]


class PartWriter:
    """Streams batches into parts of at most ``max_rows`` rows and about ``max_bytes`` bytes.

    A part closes when either limit is reached (bytes are checked after each batch, so a part
    exceeds ``max_bytes`` by at most one batch). ``on_part`` is called with each finished
    part's entry, for progress logs and resumable checkpoints.
    """

    def __init__(self, *, fmt: PartFormat, open_part: OpenPart, max_rows: int = 1_000_000,
                 max_bytes: int = 128 * 1024 * 1024, schema: pa.Schema | None = None, start_index: int = 0,
                 on_part: Callable[[FileEntry], None] | None = None) -> None:
        if max_rows <= 0 or max_bytes <= 0:
            raise ValueError(f"max_rows ({max_rows}) and max_bytes ({max_bytes}) must be positive")
        self.fmt, self._open_part = fmt, open_part
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.schema = schema
        self.files: list[FileEntry] = []
        self._next_index = start_index
        self._on_part = on_part
        self._sink: PartSink | None = None
        self._writer: FormatWriter | None = None
        self._part_rows = 0
        self._closed = False

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files) + self._part_rows

    @property
    def next_index(self) -> int:
        return self._next_index

    def write(self, batch: Batch) -> None:
        if self._closed:
            raise RuntimeError("write() after close()")
        n, offset = batch_rows(batch), 0
        while offset < n:
            if self._writer is None:
                self._open()
            take = min(n - offset, self.max_rows - self._part_rows)
            chunk = batch if (offset == 0 and take == n) else batch_slice(batch, offset, take)
            assert self._writer is not None
            self._writer.write(chunk)
            self._part_rows += take
            offset += take
            if self._part_rows >= self.max_rows or self._sink_bytes() >= self.max_bytes:
                self._finish_part()
        if n == 0 and self.schema is None and hasattr(batch, "schema"):
            self.schema = batch.schema  # remember the schema of an empty result

    def write_all(self, batches: Iterable[Batch]) -> list[FileEntry]:
        try:
            for b in batches:
                self.write(b)
            return self.close()
        except BaseException:
            self.abort()
            raise

    def close(self, *, empty_part: bool = False) -> list[FileEntry]:
        """Finish the open part. ``empty_part`` writes one 0-row part when nothing was written
        (a typed empty Parquet file); by default an empty result has no parts."""
        if not self._closed:
            if self._writer is None and empty_part and not self.files:
                self._open()
            if self._writer is not None:
                self._finish_part()
            self._closed = True
        return list(self.files)

    def abort(self) -> None:
        """Discard the open part (already finished parts stay; the publisher cleans them)."""
        if self._sink is not None:
            self._sink.abort()  # from here on the sink discards whatever is written to it
        if self._writer is not None:
            try:  # release the native writer now rather than in a finalizer writing to a dead sink
                self._writer.close()
            except Exception as e:  # noqa: BLE001 - the part is being discarded anyway
                log.debug("closing the aborted part's writer failed: %s", e)
        self._sink, self._writer, self._closed = None, None, True

    def _sink_bytes(self) -> int:
        assert self._sink is not None
        return self._sink.tell()

    def _open(self) -> None:
        self._sink = self._open_part(self._next_index)
        self._writer = self.fmt.open(self._sink, self.schema)
        self._part_rows = 0

    def _finish_part(self) -> None:
        assert self._writer is not None and self._sink is not None
        self._writer.close()
        if self.schema is None:
            self.schema = self._writer.schema
        stored = self._sink.commit()
        entry = FileEntry(key=stored.key, bytes=stored.bytes, rows=self._part_rows, sha256=stored.sha256)
        self.files.append(entry)
        self._next_index += 1
        self._sink, self._writer, self._part_rows = None, None, 0
        if self._on_part is not None:
            self._on_part(entry)
