"""Publishing one interval of one dataset on S3: parts first, ``_manifest.json`` last.

Protocol, the same for every pattern:

1. ``begin()`` deletes the interval's manifest if a previous run published one, so from then
   on readers that wait for the manifest see the interval as not ready, never half-rewritten.
2. Parts are streamed to their deterministic keys (``part_writer()``, ``upload()``).
3. ``publish()`` writes the manifest, then removes every other object under the partition
   prefix (stale parts of earlier, larger runs, and leftovers of failed attempts), then
   updates the dataset's ``_state/latest.json`` pointer (the durable watermark).

A failed attempt stops before step 3: the interval stays unpublished and the retry rewrites
the same keys. A rerun that publishes the same rows publishes the same object set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, BinaryIO

from s3lander.landing.checksums import Crc32c
from s3lander.landing.formats import PartFormat
from s3lander.landing.intervals import Interval
from s3lander.landing.layout import MANIFEST_NAME, DatasetLocation, check_segment
from s3lander.landing.manifest import ColumnSpec, FileEntry, Manifest, ManifestError
from s3lander.landing.sink import DEFAULT_CHUNK, PartBuffers, S3PartSink
from s3lander.landing.writer import PartWriter

log = logging.getLogger(__name__)

LATEST_STATE = "latest.json"


def _is_missing(err: Exception) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    return code in {"404", "NoSuchKey", "NotFound"}


class ObjectStore:
    """The handful of S3 calls the landing contract makes, over one boto3 client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as e:
            if _is_missing(e):
                return None
            raise

    def get_json(self, bucket: str, key: str) -> Any:
        raw = self.get_bytes(bucket, key)
        return None if raw is None else json.loads(raw)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/json") -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def delete(self, bucket: str, keys: Iterable[str]) -> int:
        batch: list[dict[str, str]] = []
        n = 0
        for k in keys:
            batch.append({"Key": k})
            if len(batch) == 1000:
                n += self._delete_batch(bucket, batch)
                batch = []
        if batch:
            n += self._delete_batch(bucket, batch)
        return n

    def _delete_batch(self, bucket: str, batch: list[dict[str, str]]) -> int:
        resp = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if resp.get("Errors"):
            first = resp["Errors"][0]
            raise RuntimeError(f"deleting s3://{bucket}/{first.get('Key')} failed: {first.get('Message')}")
        return len(batch)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys


class IntervalPublisher:
    """Writes and publishes one interval of one dataset (see the module docstring)."""

    def __init__(self, *, client: Any, location: DatasetLocation, interval: Interval, run_id: str,
                 chunk_size: int = DEFAULT_CHUNK, upload_concurrency: int = 4,
                 subpartition: str | None = None, body_checksum: Crc32c | None | str = "native") -> None:
        """:param subpartition: optional extra key segment(s) under the interval's partition, e.g.
            ``batch=20240101T235500Z``: several publications (micro-batches) then share one
            ``dt=/hour=`` partition, each with its own prefix and manifest.
        :param body_checksum: how sinks check upload bodies: ``"native"`` (default) a hardware
            CRC32C computed while streaming when google-crc32c's C extension is installed, else
            botocore's own CRC32; or a strategy, or None for botocore's."""
        self.store = ObjectStore(client)
        self.location, self.interval, self.run_id = location, interval, run_id
        self.body_checksum = Crc32c.native() if body_checksum == "native" else body_checksum
        if subpartition is not None:
            for seg in subpartition.strip("/").split("/"):
                check_segment(seg.replace("=", "_"), what="subpartition segment")
            subpartition = subpartition.strip("/") + "/"
        self.subpartition = subpartition or ""
        self.chunk_size, self.upload_concurrency = chunk_size, upload_concurrency
        #: part buffers shared by this publisher's sinks (reused: no fresh memory per part)
        self.part_buffers = PartBuffers(size=chunk_size, keep=upload_concurrency + 1)
        self._executor: ThreadPoolExecutor | None = None
        self._begun = False
        self.previous: Manifest | None = None

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def prefix_of(self, interval: Interval) -> str:
        """The object prefix of ``interval`` (its partition, plus the subpartition if any)."""
        return self.location.partition_prefix(interval) + self.subpartition

    @property
    def prefix(self) -> str:
        return self.prefix_of(self.interval)

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST_NAME

    # --- reading what is there -----------------------------------------------------------
    def read_manifest(self, interval: Interval | None = None) -> Manifest | None:
        key = self.prefix_of(interval or self.interval) + MANIFEST_NAME
        raw = self.store.get_bytes(self.bucket, key)
        return None if raw is None else Manifest.from_json(raw, source=f"s3://{self.bucket}/{key}")

    def latest(self) -> dict[str, Any] | None:
        """The dataset's last published state: ``{interval, manifest_key, watermark, schema, run_id}``."""
        return self.store.get_json(self.bucket, self.location.state_key(LATEST_STATE))

    # --- writing --------------------------------------------------------------------------
    def begin(self) -> Manifest | None:
        """Unpublish the interval (delete its manifest); return what was published before."""
        if not self._begun:
            try:
                self.previous = self.read_manifest()
            except ManifestError as e:
                log.warning("Ignoring an unreadable earlier manifest: %s", e)
            self.store.delete(self.bucket, [self.manifest_key])
            self._begun = True
        return self.previous

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.upload_concurrency, thread_name_prefix="s3-upload")
        return self._executor

    def open_sink(self, name: str, content_type: str = "application/octet-stream") -> S3PartSink:
        """A sink for an object named ``name`` inside the interval's partition."""
        self.begin()
        return S3PartSink(client=self.store.client, bucket=self.bucket, key=self.prefix + name,
                          executor=self.executor, chunk_size=self.chunk_size,
                          max_inflight=self.upload_concurrency, content_type=content_type,
                          checksum=self.body_checksum, buffers=self.part_buffers)

    def part_writer(self, fmt: PartFormat, *, max_rows: int = 1_000_000, max_bytes: int = 128 * 1024 * 1024,
                    schema: Any = None, stem: str = "part", start_index: int = 0,
                    on_part: Callable[[FileEntry], None] | None = None) -> PartWriter:
        from s3lander.landing.layout import part_name

        return PartWriter(
            fmt=fmt, max_rows=max_rows, max_bytes=max_bytes, schema=schema, start_index=start_index,
            on_part=on_part,
            open_part=lambda i: self.open_sink(part_name(i, fmt.ext, stem=stem), fmt.content_type))

    def upload(self, name: str, stream: BinaryIO, *, rows: int = 0, read_size: int = 8 * 1024 * 1024,
               content_type: str = "application/octet-stream") -> FileEntry:
        """Stream a file object to ``<partition>/<name>``; nothing is visible if it fails."""
        sink = self.open_sink(name, content_type)
        try:
            while chunk := stream.read(read_size):
                sink.write(chunk)
            stored = sink.commit()
        except BaseException:
            sink.abort()
            raise
        return FileEntry(key=stored.key, bytes=stored.bytes, rows=rows, sha256=stored.sha256)

    def publish(self, files: list[FileEntry], *, fmt: str, schema: list[ColumnSpec] | None = None,
                watermark: Any = None, extra: dict[str, Any] | None = None, keep: Iterable[str] = (),
                update_latest: bool = True) -> Manifest:
        """Write the manifest (last), remove stale objects, advance ``latest.json``."""
        self.begin()
        outside = [f.key for f in files if not f.key.startswith(self.prefix)]
        if outside:
            raise ValueError(f"files outside the interval prefix {self.prefix}: {outside[:3]}")
        manifest = Manifest(
            dataset=self.location.name, location=self.location.uri, interval=self.interval, run_id=self.run_id,
            format=fmt, files=sorted(files, key=lambda f: f.key), schema=list(schema or []), watermark=watermark,
            extra=dict(extra or {}), published_at=datetime.now(timezone.utc).isoformat())
        self.store.put_bytes(self.bucket, self.manifest_key, manifest.to_json())
        wanted = {*manifest.keys, self.manifest_key, *keep}
        stale = [k for k in self.store.list_keys(self.bucket, self.prefix) if k not in wanted]
        if stale:
            self.store.delete(self.bucket, stale)
            log.info("Removed %d stale object(s) under s3://%s/%s", len(stale), self.bucket, self.prefix)
        if update_latest:
            self._advance_latest(manifest)
        self.close()
        return manifest

    def _advance_latest(self, manifest: Manifest) -> None:
        """Move ``latest.json`` forward only: a backfill of an old interval must not rewind it."""
        key = self.location.state_key(LATEST_STATE)
        current = self.store.get_json(self.bucket, key)
        if current and Interval.from_dict(current["interval"]).end > self.interval.end:
            return
        state = {"interval": self.interval.to_dict(), "manifest_key": self.manifest_key, "run_id": self.run_id,
                 "watermark": manifest.watermark, "rows": manifest.rows,
                 "schema": [c.__dict__ for c in manifest.schema]}
        self.store.put_bytes(self.bucket, key, json.dumps(state, default=str).encode())

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


__all__ = ["MANIFEST_NAME", "IntervalPublisher", "ObjectStore"]
