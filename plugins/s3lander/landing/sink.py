"""Sinks that parts are streamed into: S3 (multipart, uploads overlapped) and memory (tests).

``S3PartSink`` copies what it is given into a chunk-sized buffer; each full buffer becomes a
multipart-upload part sent by a thread pool while the caller keeps encoding, with at most
``max_inflight`` parts in flight. An object smaller than one chunk is sent with a single PUT.
The SHA-256 of the whole object is computed on the way (``sha256`` gives the running digest,
so a caller need not hash the same bytes again). Until ``commit()`` nothing is visible at the
key, and ``abort()`` discards the upload, so a failed attempt never leaves a partial object.

Part buffers are ``bytearray``s reused from a :class:`PartBuffers` pool (shared by the sinks of
one publisher), for two measured reasons (1 GiB through the sink): a fresh 8 MiB buffer per part
costs ~260k page faults per GiB (0.7 CPU s of kernel time with glibc's mmap threshold fixed,
see ``s3lander.memory``); and botocore turns a ``bytes`` body into a ``BytesIO`` that urllib3
then sends 16 KiB at a time through Python, while a ``bytearray`` body goes to the socket in
one ``sendall`` (no ``Expect: 100-continue`` round trip either). A part's buffer is reused once
its ``upload_part`` call has returned: a client must not keep the body beyond the call.

With a ``checksum`` strategy (:mod:`.checksums`) each body's checksum is extended as its bytes
arrive and sent with it, instead of botocore reading every body a second time for its CRC32.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections import deque
from concurrent.futures import Executor, Future
from typing import Any

from s3lander.landing.checksums import Crc32c
from s3lander.landing.writer import StoredObject

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 16 * 1024 * 1024  # S3's multipart minimum is 5 MiB
MIN_CHUNK = 5 * 1024 * 1024
#: an object's first bytes are kept as written until they pass this size; only then does it take
#: a part buffer (so many small objects in flight do not each hold a whole part's memory)
SMALL_OBJECT = 1024 * 1024


class PartBuffers:
    """Reusable part buffers of one size; thread-safe. Keeps at most ``keep`` free buffers (what
    is in flight is bounded by the sinks, not here)."""

    def __init__(self, *, size: int, keep: int) -> None:
        self.size, self.keep = size, keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def give(self, buf: bytes | bytearray) -> None:
        if not isinstance(buf, bytearray) or len(buf) != self.size:
            return  # a short last part or a small object's bytes: not one of ours
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(buf)


class S3PartSink(io.RawIOBase):
    """A write-only file object whose bytes become one S3 object on ``commit()``."""

    def __init__(self, *, client: Any, bucket: str, key: str, executor: Executor, chunk_size: int = DEFAULT_CHUNK,
                 max_inflight: int = 4, content_type: str = "application/octet-stream",
                 checksum: Crc32c | None = None, buffers: PartBuffers | None = None) -> None:
        super().__init__()
        if chunk_size < MIN_CHUNK:
            raise ValueError(f"chunk_size {chunk_size} is below S3's 5 MiB multipart minimum")
        self.client, self.bucket, self.key = client, bucket, key
        self._executor, self._chunk_size, self._max_inflight = executor, chunk_size, max(1, max_inflight)
        self._content_type = content_type
        self._checksum = checksum
        self._crc = 0  # running checksum of the buffered body
        if buffers is not None and buffers.size != chunk_size:
            raise ValueError(f"part buffers of {buffers.size} bytes for a sink of {chunk_size}-byte parts")
        self._buffers = buffers or PartBuffers(size=chunk_size, keep=self._max_inflight + 1)
        self._small: list[bytes] = []  # the object's first bytes, while it may stay small
        self._buf: bytearray | None = None  # the part being filled
        self._view: memoryview | None = None
        self._buffered = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._pending: deque[Future[dict[str, Any]]] = deque()
        self._parts: list[dict[str, Any]] = []
        self._done = False
        self._aborted = False

    # --- file protocol (pyarrow and gzip write through it) ---------------------------
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        mv = memoryview(data).cast("B")
        n = len(mv)
        if self._aborted:
            return n  # an aborted part swallows the encoder's last words (footer, trailer)
        if self._done:
            raise ValueError(f"write to s3://{self.bucket}/{self.key} after commit")
        if not n:
            return 0
        self._hash.update(mv)
        self._size += n
        if self._upload_id is None and self._buf is None and self._buffered + n <= SMALL_OBJECT:
            chunk = data if type(data) is bytes else mv.tobytes()  # bytes are immutable: kept as they are
            if self._checksum is not None:
                self._crc = self._checksum.extend(self._crc, chunk)
            self._small.append(chunk)
            self._buffered += n
            return n
        # the checksum library reads bytes only: a buffer (pyarrow's) is copied for it once
        chunk = (data if type(data) is bytes else mv.tobytes()) if self._checksum is not None else mv
        view = memoryview(chunk)
        pos = 0
        while pos < n:
            if self._buf is None:
                self._take_part_buffer()
            k = min(n - pos, self._chunk_size - self._buffered)
            self._view[self._buffered:self._buffered + k] = view[pos:pos + k]  # type: ignore[index]
            if self._checksum is not None:
                self._crc = self._checksum.extend(self._crc, chunk if k == n else chunk[pos:pos + k])
            self._buffered += k
            pos += k
            if self._buffered == self._chunk_size:
                self._send_chunk(final=False)
        return n

    def _take_part_buffer(self) -> None:
        """Start filling a pooled part buffer, with the small first bytes (if any) at its start."""
        self._buf = self._buffers.take()
        self._view = memoryview(self._buf)
        at = 0
        for b in self._small:
            self._view[at:at + len(b)] = b
            at += len(b)
        self._small = []

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of every byte written so far (the object's digest once writing is done)."""
        return self._hash.hexdigest()

    def _take_buffer(self) -> tuple[bytes | bytearray, dict[str, str]]:
        """The buffered body, and the request argument carrying its checksum (if we compute it).

        A full part is the pooled buffer itself (given back once uploaded); a short one (the
        last part) is copied out and its buffer given back at once; a small object's bytes are
        joined."""
        buf, small, n = self._buf, self._small, self._buffered
        check = {self._checksum.parameter: self._checksum.encode(self._crc)} if self._checksum is not None else {}
        self._release_buffer()
        self._crc = 0
        body: bytes | bytearray
        if buf is None:
            body = b"".join(small)
        elif n < len(buf):
            body = buf[:n]
            self._buffers.give(buf)
        else:
            body = buf
        return body, check

    def _release_buffer(self, *, give_back: bool = False) -> None:
        if give_back and self._buf is not None:
            self._buffers.give(self._buf)
        if self._view is not None:
            self._view.release()
        self._buf, self._view, self._buffered, self._small = None, None, 0, []

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        # Closing the file object (pyarrow does) must not publish: commit() does.
        io.RawIOBase.close(self)

    # --- upload ------------------------------------------------------------------------
    def _send_chunk(self, *, final: bool) -> None:
        data, check = self._take_buffer()
        if self._upload_id is None:
            algo = {"ChecksumAlgorithm": self._checksum.algorithm} if self._checksum is not None else {}
            self._upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self._content_type, **algo)["UploadId"]
        number = len(self._parts) + len(self._pending) + 1
        while len(self._pending) >= self._max_inflight:  # bound memory: wait for the oldest
            self._parts.append(self._pending.popleft().result())
        self._pending.append(self._executor.submit(self._upload_part, number, data, check))

    def _upload_part(self, number: int, data: bytearray, check: dict[str, str]) -> dict[str, Any]:
        try:
            resp = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                           PartNumber=number, Body=data, **check)
        finally:
            self._buffers.give(data)  # sent or failed: nothing reads it any more
        return {"PartNumber": number, "ETag": resp["ETag"], **check}  # Complete lists each part's checksum

    def commit(self) -> StoredObject:
        if self._done:
            raise ValueError(f"s3://{self.bucket}/{self.key} already committed or aborted")
        try:
            if self._upload_id is None:
                data, check = self._take_buffer()
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, ContentType=self._content_type,
                                       **check)
            else:
                if self._buffered:
                    self._send_chunk(final=True)
                while self._pending:
                    self._parts.append(self._pending.popleft().result())
                self._parts.sort(key=lambda p: p["PartNumber"])
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                                      MultipartUpload={"Parts": self._parts})
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._release_buffer(give_back=True)
        return StoredObject(key=self.key, bytes=self._size, sha256=self._hash.hexdigest())

    def abort(self) -> None:
        if self._done:
            return
        self._done = self._aborted = True
        for f in self._pending:
            f.cancel()
        for f in self._pending:
            try:
                f.result()
            except BaseException as e:  # noqa: BLE001 - the upload is being discarded anyway
                log.debug("part upload of s3://%s/%s failed during abort: %s", self.bucket, self.key, e)
        self._pending.clear()
        self._release_buffer(give_back=True)
        if self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            except Exception as e:  # noqa: BLE001 - best effort; an S3 lifecycle rule expires leftovers
                log.warning("could not abort the multipart upload of s3://%s/%s: %s", self.bucket, self.key, e)


class MemorySink(io.RawIOBase):
    """A sink kept in memory: for unit tests and small objects built before upload."""

    def __init__(self, key: str, store: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.key = key
        self.store = store if store is not None else {}
        self._buf = io.BytesIO()
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        return self._buf.write(data)

    def tell(self) -> int:
        return self._buf.tell()

    def close(self) -> None:
        io.RawIOBase.close(self)

    def commit(self) -> StoredObject:
        data = self._buf.getvalue()
        self.store[self.key] = data
        self._done = True
        return StoredObject(key=self.key, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    def abort(self) -> None:
        self._done = True
