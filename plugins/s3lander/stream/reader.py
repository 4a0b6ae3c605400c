"""The deterministic batch reader: round-robin over readable shards, within boundaries and limits.

Works over any ``ShardSource`` (the boto3 hook in production, a fake in unit tests). Records
come out in a fixed order: rounds over the readable shards sorted by id, up to
``per_shard_chunk`` records from each shard per round. The reader records what it took as
per-shard ranges and as a schedule ``[(shard, n), ...]``; ``ReplayReader`` follows a recorded
schedule exactly, so a rerun of a batch yields the same records in the same order, hence the
same parts, byte for byte.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from s3lander.stream.batching import BatchLimits, Boundary
from s3lander.stream.checkpoint import (
    BatchPlan,
    Checkpoint,
    CheckpointError,
    ShardInfo,
    ShardRange,
    readable,
    seq_after,
)
from s3lander.stream.events import StreamRecord

log = logging.getLogger(__name__)

#: Kinesis returns at most 10,000 records per GetRecords call
MAX_GET_RECORDS = 10_000
#: empty pages in a row tolerated while MillisBehindLatest says there is more (real Kinesis does this)
MAX_EMPTY_PAGES = 50


class IteratorExpired(Exception):
    """The shard iterator expired (5 minutes); the reader asks for a new one where it stopped."""


@dataclass
class RecordsPage:
    records: list[StreamRecord]
    next_iterator: str | None
    millis_behind: int | None = 0
    child_shards: list[ShardInfo] = field(default_factory=list)


class ShardSource(Protocol):
    """What the reader needs from Kinesis."""

    def shard_iterator(self, shard_id: str, *, after: str | None = None, at: str | None = None) -> str:
        """An iterator after sequence ``after``, at sequence ``at``, or at the trim horizon (neither)."""

    def get_records(self, shard_id: str, iterator: str, limit: int) -> RecordsPage:
        """One GetRecords page of ``shard_id``; raises ``IteratorExpired`` for a stale iterator."""


class _Cursor:
    """Reads one shard forward, buffering what a page returned beyond what was taken."""

    def __init__(self, source: ShardSource, shard: ShardInfo, *, after: str | None, at: str | None = None,
                 stop_at: str | None = None, boundary: Boundary | None = None, page_size: int = 1000) -> None:
        self.source, self.shard = source, shard
        self.after, self.at, self.stop_at, self.boundary = after, at, stop_at, boundary
        self.page_size = max(1, min(page_size, MAX_GET_RECORDS))
        self.buffer: deque[StreamRecord] = deque()
        self.fetched: str | None = None  # last sequence fetched from the server
        self.iterator: str | None = None
        self.exhausted = False  # nothing more will be fetched in this batch
        self.closed_end = False  # the end of a closed shard was reached
        self.children: list[ShardInfo] = []

    @property
    def finished(self) -> bool:
        return self.closed_end and not self.buffer

    @property
    def done(self) -> bool:
        return self.exhausted and not self.buffer

    def _iterator(self) -> str:
        if self.iterator is None:
            if self.fetched is not None:
                self.iterator = self.source.shard_iterator(self.shard.shard_id, after=self.fetched)
            else:
                self.iterator = self.source.shard_iterator(self.shard.shard_id, after=self.after, at=self.at)
        return self.iterator

    def _fetch(self) -> None:
        empty = 0
        while not self.exhausted:
            try:
                page = self.source.get_records(self.shard.shard_id, self._iterator(), self.page_size)
            except IteratorExpired:
                self.iterator = None
                continue
            for rec in page.records:
                if self.stop_at is not None and seq_after(rec.sequence, self.stop_at):
                    self.exhausted = True
                    break
                if self.boundary is not None and not self.boundary.admits(rec.arrival):
                    self.exhausted = True  # this record and all later ones belong to a later batch
                    break
                self.buffer.append(rec)
                self.fetched = rec.sequence
                if self.stop_at is not None and rec.sequence == self.stop_at:
                    self.exhausted = True
                    break
            self.iterator = page.next_iterator
            if self.exhausted:
                return
            if page.next_iterator is None:  # a closed shard read to its end
                self.exhausted = self.closed_end = True
                self.children = list(page.child_shards)
                return
            if page.records:
                return
            if not page.millis_behind:  # at the tip
                self.exhausted = True
                # moto never returns a null iterator for a closed shard: at its tip, it is finished too
                self.closed_end = self.shard.closed
                return
            empty += 1
            if empty >= MAX_EMPTY_PAGES:
                log.warning("Shard %s: %d empty pages while %s ms behind; leaving the rest for the next run",
                            self.shard.shard_id, empty, page.millis_behind)
                self.exhausted = True
                return

    def take(self, n: int, byte_budget: int) -> list[StreamRecord]:
        """Up to ``n`` records; stops once their bytes reach ``byte_budget`` (the crossing one included)."""
        out: list[StreamRecord] = []
        used = 0
        while len(out) < n and used < byte_budget:
            if not self.buffer:
                if self.exhausted:
                    break
                self._fetch()
                continue
            rec = self.buffer.popleft()
            out.append(rec)
            used += rec.size
        return out


class BatchReader:
    """Reads a NEW batch after the checkpoint (see the module docstring); ``.plan()`` describes it after."""

    def __init__(self, source: ShardSource, shards: Sequence[ShardInfo], checkpoint: Checkpoint, *,
                 boundary: Boundary, limits: BatchLimits) -> None:
        self.source, self.checkpoint, self.boundary, self.limits = source, checkpoint, boundary, limits
        self.listed = {s.shard_id: s for s in shards}
        self.finished = {sid for sid in self.listed if checkpoint.is_finished(sid)}
        self.schedule: list[tuple[str, int]] = []
        self.ranges: dict[str, ShardRange] = {}
        self.records = 0
        self.bytes = 0
        self.limited: str | None = None  # "records" or "bytes" when a limit cut the batch
        self._cursors: dict[str, _Cursor] = {}
        self._done: set[str] = set()

    def _cursor(self, shard_id: str) -> _Cursor:
        if shard_id not in self._cursors:
            after = self.checkpoint.start_position(shard_id)
            self._cursors[shard_id] = _Cursor(self.source, self.listed[shard_id], after=after, boundary=self.boundary,
                                              page_size=max(self.limits.per_shard_chunk, self.limits.page_size))
            self.ranges[shard_id] = ShardRange(after=after)
        return self._cursors[shard_id]

    def __iter__(self) -> Iterator[list[StreamRecord]]:
        lim = self.limits
        while self.limited is None:
            active = sorted(sid for sid, s in self.listed.items()
                            if sid not in self._done and readable(s, self.listed, self.finished))
            if not active:
                break
            for sid in active:
                cursor = self._cursor(sid)
                recs = cursor.take(min(lim.per_shard_chunk, lim.max_records - self.records),
                                   lim.max_bytes - self.bytes)
                if recs:
                    self._took(sid, recs)
                    yield recs
                if cursor.done:
                    self._done.add(sid)
                    if cursor.finished:
                        self.finished.add(sid)
                        self._mark_finished(sid)
                        for child in cursor.children:  # created after our ListShards call
                            self.listed.setdefault(child.shard_id, child)
                if self.records >= lim.max_records:
                    self.limited = "records"
                elif self.bytes >= lim.max_bytes:
                    self.limited = "bytes"
                if self.limited:
                    break

    def _took(self, shard_id: str, recs: list[StreamRecord]) -> None:
        r = self.ranges[shard_id]
        size = sum(x.size for x in recs)
        self.ranges[shard_id] = ShardRange(after=r.after, first=r.first or recs[0].sequence, last=recs[-1].sequence,
                                           records=r.records + len(recs), bytes=r.bytes + size)
        self.schedule.append((shard_id, len(recs)))
        self.records += len(recs)
        self.bytes += size

    def _mark_finished(self, shard_id: str) -> None:
        r = self.ranges[shard_id]
        self.ranges[shard_id] = ShardRange(after=r.after, first=r.first, last=r.last, records=r.records,
                                           bytes=r.bytes, finished=True)

    def plan(self, batch_id: str, interval, *, run_id: str | None = None) -> BatchPlan:  # type: ignore[no-untyped-def]
        return BatchPlan(batch_id=batch_id, interval=interval, ranges=dict(self.ranges), schedule=list(self.schedule),
                         boundary=self.boundary.name, run_id=run_id)


class ReplayReader:
    """Re-reads a recorded batch: the same ranges, in the same schedule (AT_SEQUENCE_NUMBER first)."""

    def __init__(self, source: ShardSource, plan: BatchPlan, shards: Sequence[ShardInfo] = ()) -> None:
        self.source, self.plan = source, plan
        self.listed = {s.shard_id: s for s in shards}
        self.records = 0
        self.bytes = 0
        self.limited: str | None = None
        self._cursors: dict[str, _Cursor] = {}

    def _cursor(self, shard_id: str) -> _Cursor:
        if shard_id not in self._cursors:
            rng = self.plan.ranges.get(shard_id)
            if rng is None or rng.first is None:
                raise CheckpointError(f"batch {self.plan.batch_id}: its schedule reads shard {shard_id}, "
                                      "but its ranges have no records there")
            shard = self.listed.get(shard_id, ShardInfo(shard_id))
            self._cursors[shard_id] = _Cursor(self.source, shard, after=None, at=rng.first, stop_at=rng.last,
                                              page_size=min(MAX_GET_RECORDS, max(rng.records, 1)))
        return self._cursors[shard_id]

    def __iter__(self) -> Iterator[list[StreamRecord]]:
        started: set[str] = set()
        for shard_id, n in self.plan.schedule:
            recs = self._cursor(shard_id).take(n, 1 << 62)
            rng = self.plan.ranges[shard_id]
            if len(recs) != n or (shard_id not in started and recs[0].sequence != rng.first):
                got = f"{recs[0].sequence}.." if recs else "nothing"
                raise CheckpointError(
                    f"cannot replay batch {self.plan.batch_id} exactly: shard {shard_id} gave {len(recs)} of {n} "
                    f"records (from {got}) in range {rng.first}..{rng.last}; they may have expired from the stream "
                    "(retention). Restore them, or delete the batch ledger and its claim to re-plan the batch")
            started.add(shard_id)
            self.records += n
            self.bytes += sum(r.size for r in recs)
            yield recs


def prefetch(chunks: Iterable[list[StreamRecord]], depth: int = 4) -> Iterator[list[StreamRecord]]:
    """Iterate ``chunks`` on a background thread, ``depth`` chunks ahead.

    Reading (network waits, response parsing) then overlaps with landing the previous chunks.
    The order is unchanged. An error of the reader is raised here; closing this generator
    (an error while landing) stops the reader at its next chunk.
    """
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread
            put(("error", e))

    worker = threading.Thread(target=run, name="kinesis-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        worker.join(timeout=30)
