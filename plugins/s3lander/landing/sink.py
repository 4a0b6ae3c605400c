"""Sinks that parts are streamed into: S3 (multipart, uploads overlapped) and memory (tests).

``S3PartSink`` buffers one chunk; each full chunk becomes a multipart-upload part sent by a
thread pool while the caller keeps encoding, with at most ``max_inflight`` chunks in memory.
An object smaller than one chunk is sent with a single PUT. The SHA-256 of the whole
object is computed on the way (``sha256`` gives the running digest, so a caller need not hash
the same bytes again). ``bytes`` written are kept by reference until their chunk is sent
(they are immutable); other buffers (memoryviews that pyarrow reuses) are copied. Until
``commit()`` nothing is visible at the key, and ``abort()`` discards the upload, so a failed
attempt never leaves a partial object.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import deque
from concurrent.futures import Executor, Future
from typing import Any

from s3lander.landing.writer import StoredObject

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 16 * 1024 * 1024  # S3's multipart minimum is 5 MiB
MIN_CHUNK = 5 * 1024 * 1024


class S3PartSink(io.RawIOBase):
    """A write-only file object whose bytes become one S3 object on ``commit()``."""

    def __init__(self, *, client: Any, bucket: str, key: str, executor: Executor, chunk_size: int = DEFAULT_CHUNK,
                 max_inflight: int = 4, content_type: str = "application/octet-stream") -> None:
        super().__init__()
        if chunk_size < MIN_CHUNK:
            raise ValueError(f"chunk_size {chunk_size} is below S3's 5 MiB multipart minimum")
        self.client, self.bucket, self.key = client, bucket, key
        self._executor, self._chunk_size, self._max_inflight = executor, chunk_size, max(1, max_inflight)
        self._content_type = content_type
        self._buf: list[bytes] = []
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
        self._buf.append(data if type(data) is bytes else mv.tobytes())
        self._buffered += n
        self._size += n
        if self._buffered >= self._chunk_size:
            self._send_chunk(final=False)
        return n

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of every byte written so far (the object's digest once writing is done)."""
        return self._hash.hexdigest()

    def _take_buffer(self) -> bytes:
        data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
        self._buf, self._buffered = [], 0
        return data

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        # Closing the file object (pyarrow does) must not publish: commit() does.
        io.RawIOBase.close(self)

    # --- upload ------------------------------------------------------------------------
    def _send_chunk(self, *, final: bool) -> None:
        data = self._take_buffer()
        if self._upload_id is None:
            self._upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self._content_type)["UploadId"]
        number = len(self._parts) + len(self._pending) + 1
        while len(self._pending) >= self._max_inflight:  # bound memory: wait for the oldest
            self._parts.append(self._pending.popleft().result())
        self._pending.append(self._executor.submit(self._upload_part, number, data))

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        resp = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                       PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def commit(self) -> StoredObject:
        if self._done:
            raise ValueError(f"s3://{self.bucket}/{self.key} already committed or aborted")
        try:
            if self._upload_id is None:
                data = self._take_buffer()
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, ContentType=self._content_type)
            else:
                if self._buf:
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
        self._buf, self._buffered = [], 0
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
        self._buf, self._buffered = [], 0
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
