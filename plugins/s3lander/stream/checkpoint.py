"""Checkpoints, claims and the batch ledger: what makes every record land exactly once.

State objects (JSON on S3, under the stream's ``_state/`` folder):

``checkpoint.json``        per shard, the last sequence number whose batch is PUBLISHED
                           (and whether a closed shard was read to its end); plus
                           ``pending``: batches whose read plan is fixed but whose
                           publication is not confirmed yet ("claims").
``batch-<id>.json``        the ledger of one published batch: per-shard ranges and the
                           exact read schedule, and the manifests it published.

Protocol of one run (batch ``B``):

1. If ``B`` has a ledger or a pending claim, its plan is REPLAYED: the same per-shard ranges
   in the same order, so the rerun writes the same objects (no new records join it).
2. Otherwise the run reads after ``start_position()`` (the checkpoint, or the end of a
   pending claim of another batch, whichever is later) and stream-writes parts (nothing is
   published yet). Then it CLAIMS ``B`` (one atomic PUT of ``checkpoint.json``), publishes
   every partition's manifest, writes the ledger, and only then ADVANCES the checkpoint.

A run killed before the claim leaves unpublished parts only; the rerun reads the same start
again. Killed after the claim, the rerun replays exactly the claimed ranges. A later batch
never re-reads claimed records, and an earlier batch never loses them.

Sequence numbers are compared as integers within a shard (they are decimal strings).
Resharding: a shard is read only once all its parents still in the stream are finished
(closed and read to the end), so records of one partition key stay in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from s3lander.landing.intervals import Interval

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A state object that does not parse, or a plan that cannot be honoured."""


def seq_max(a: str | None, b: str | None) -> str | None:
    """The later of two sequence numbers of one shard (None = before the first record)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if int(a) >= int(b) else b


def seq_after(a: str, b: str | None) -> bool:
    """True if sequence ``a`` comes after position ``b``."""
    return b is None or int(a) > int(b)


@dataclass(frozen=True)
class ShardInfo:
    """A shard as ``ListShards`` describes it."""

    shard_id: str
    parents: tuple[str, ...] = ()
    ending_sequence: str | None = None  # set when the shard is closed (split or merged)

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None

    @classmethod
    def from_api(cls, shard: Mapping[str, Any]) -> ShardInfo:
        parents = tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
        return cls(shard_id=shard["ShardId"], parents=parents,
                   ending_sequence=shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))


@dataclass(frozen=True)
class ShardPosition:
    """Where the published data of one shard ends."""

    sequence: str | None = None
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "finished": self.finished}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShardPosition:
        return cls(sequence=d.get("sequence"), finished=bool(d.get("finished", False)))


@dataclass(frozen=True)
class ShardRange:
    """What one batch read from one shard: after ``after`` (exclusive), ``first``..``last`` inclusive."""

    after: str | None
    first: str | None = None
    last: str | None = None
    records: int = 0
    bytes: int = 0
    finished: bool = False  # the batch reached the end of a closed shard

    @property
    def end(self) -> str | None:
        """The position after this range: its last record, or where it started if it read none."""
        return self.last if self.last is not None else self.after

    def to_dict(self) -> dict[str, Any]:
        return {"after": self.after, "first": self.first, "last": self.last, "records": self.records,
                "bytes": self.bytes, "finished": self.finished}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShardRange:
        return cls(after=d.get("after"), first=d.get("first"), last=d.get("last"), records=int(d.get("records", 0)),
                   bytes=int(d.get("bytes", 0)), finished=bool(d.get("finished", False)))


@dataclass
class BatchPlan:
    """A batch's read plan: per-shard ranges and the round-robin schedule ``[[shard, n], ...]``."""

    batch_id: str
    interval: Interval
    ranges: dict[str, ShardRange]
    schedule: list[tuple[str, int]] = field(default_factory=list)
    boundary: str = "arrival"
    status: str = "planned"
    outputs: list[str] = field(default_factory=list)
    run_id: str | None = None

    @property
    def records(self) -> int:
        return sum(r.records for r in self.ranges.values())

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "interval": self.interval.to_dict(), "boundary": self.boundary,
                "status": self.status, "run_id": self.run_id, "records": self.records,
                "ranges": {k: v.to_dict() for k, v in sorted(self.ranges.items())},
                "schedule": [[s, n] for s, n in self.schedule], "outputs": list(self.outputs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchPlan:
        return cls(batch_id=d["batch_id"], interval=Interval.from_dict(d["interval"]),
                   ranges={k: ShardRange.from_dict(v) for k, v in d.get("ranges", {}).items()},
                   schedule=[(s, int(n)) for s, n in d.get("schedule", [])], boundary=d.get("boundary", "arrival"),
                   status=d.get("status", "planned"), outputs=list(d.get("outputs", [])), run_id=d.get("run_id"))

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, source: str) -> BatchPlan:
        try:
            return cls.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"batch ledger {source} is not valid: {e}") from e


@dataclass
class Checkpoint:
    """Published positions per shard plus pending claims (see the module docstring)."""

    stream: str
    shards: dict[str, ShardPosition] = field(default_factory=dict)
    pending: dict[str, BatchPlan] = field(default_factory=dict)
    last_batch: str | None = None
    updated_at: str | None = None

    # --- reading positions --------------------------------------------------------------
    def published_position(self, shard_id: str) -> str | None:
        pos = self.shards.get(shard_id)
        return pos.sequence if pos else None

    def start_position(self, shard_id: str) -> str | None:
        """Where a NEW batch starts reading ``shard_id`` (exclusive): past published and claimed data."""
        position = self.published_position(shard_id)
        for plan in self.pending.values():
            if shard_id in plan.ranges:
                position = seq_max(position, plan.ranges[shard_id].end)
        return position

    def is_finished(self, shard_id: str) -> bool:
        """A closed shard already read to its end (by a published or a claimed batch)."""
        if self.shards.get(shard_id, ShardPosition()).finished:
            return True
        return any(p.ranges.get(shard_id, ShardRange(None)).finished for p in self.pending.values())

    # --- transitions (return new objects; the caller persists them) -------------------------
    def claim(self, plan: BatchPlan) -> Checkpoint:
        """Record ``plan`` as pending: later batches start after it, a rerun replays it."""
        for shard_id, rng in plan.ranges.items():
            if rng.first is not None and not seq_after(rng.first, self.start_position(shard_id)) \
                    and plan.batch_id not in self.pending:
                raise CheckpointError(
                    f"batch {plan.batch_id} would re-read shard {shard_id} from {rng.first}, which an earlier "
                    f"batch already covers (up to {self.start_position(shard_id)}); refusing to duplicate records")
        return replace(self, pending={**self.pending, plan.batch_id: plan}, updated_at=_now())

    def advance(self, plan: BatchPlan) -> Checkpoint:
        """The plan's data is published: move positions forward (never back) and drop its claim."""
        shards = dict(self.shards)
        for shard_id, rng in plan.ranges.items():
            old = shards.get(shard_id, ShardPosition())
            shards[shard_id] = ShardPosition(sequence=seq_max(old.sequence, rng.end),
                                             finished=old.finished or rng.finished)
        pending = {k: v for k, v in self.pending.items() if k != plan.batch_id}
        last = max(filter(None, [self.last_batch, plan.batch_id]))
        return replace(self, shards=shards, pending=pending, last_batch=last, updated_at=_now())

    # --- serialisation -----------------------------------------------------------------
    def to_json(self) -> bytes:
        return json.dumps({
            "checkpoint_version": CHECKPOINT_VERSION, "stream": self.stream, "last_batch": self.last_batch,
            "updated_at": self.updated_at,
            "shards": {k: v.to_dict() for k, v in sorted(self.shards.items())},
            "pending": {k: v.to_dict() for k, v in sorted(self.pending.items())},
        }, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, source: str) -> Checkpoint:
        try:
            d = json.loads(raw)
            if d.get("checkpoint_version") != CHECKPOINT_VERSION:
                raise ValueError(f"unsupported checkpoint_version {d.get('checkpoint_version')!r}")
            return cls(stream=d["stream"], last_batch=d.get("last_batch"), updated_at=d.get("updated_at"),
                       shards={k: ShardPosition.from_dict(v) for k, v in d.get("shards", {}).items()},
                       pending={k: BatchPlan.from_dict(v) for k, v in d.get("pending", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"checkpoint {source} is not valid: {e}") from e


def readable(shard: ShardInfo, listed: Mapping[str, ShardInfo], finished: set[str]) -> bool:
    """May ``shard`` be read now? Only when it is unfinished and every parent still listed is finished.

    A parent no longer listed has expired from the stream (past retention): nothing is left to
    read there, so it does not hold its children back.
    """
    if shard.shard_id in finished:
        return False
    return all(p in finished or p not in listed for p in shard.parents)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
