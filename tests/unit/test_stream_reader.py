"""State-transition tests of the batch reader and the checkpoint protocol over a fake Kinesis."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from s3lander.landing.intervals import Interval
from s3lander.stream.batching import ArrivalBoundary, BatchLimits, DrainBoundary
from s3lander.stream.checkpoint import BatchPlan, Checkpoint, CheckpointError, ShardInfo
from s3lander.stream.events import StreamRecord
from s3lander.stream.reader import BatchReader, IteratorExpired, RecordsPage, ReplayReader

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
IV = Interval(T0, T0 + timedelta(minutes=5))


class FakeKinesis:
    """Behaves like real Kinesis: per-shard sequences, short pages, empty pages behind the tip,
    closed parents ending with a null iterator and their ChildShards, expiring iterators."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.shards: dict[str, list[StreamRecord]] = {}
        self.info: dict[str, ShardInfo] = {}
        self.children: dict[str, list[ShardInfo]] = {}
        self.seq = 100
        self.calls = 0
        self.expire_every = 0

    def add_shard(self, sid: str, parents: tuple[str, ...] = ()) -> None:
        self.shards[sid] = []
        self.info[sid] = ShardInfo(sid, parents)
        for p in parents:
            self.children.setdefault(p, []).append(self.info[sid])

    def close(self, sid: str) -> None:
        end = self.shards[sid][-1].sequence if self.shards[sid] else str(self.seq)
        self.info[sid] = ShardInfo(sid, self.info[sid].parents, end)

    def put(self, sid: str, n: int, at: datetime) -> list[StreamRecord]:
        assert not self.info[sid].closed
        out = []
        for _ in range(n):
            self.seq += self.rng.randint(1, 50)
            rec = StreamRecord(sid, str(self.seq), f"k{self.seq}", at, b"x" * 10)
            self.shards[sid].append(rec)
            out.append(rec)
        return out

    def list_shards(self) -> list[ShardInfo]:
        return list(self.info.values())

    def shard_iterator(self, shard_id: str, *, after: str | None = None, at: str | None = None) -> str:
        pos = int(at) - 1 if at is not None else (int(after) if after is not None else -1)
        return f"{shard_id}|{pos}"

    def get_records(self, shard_id: str, iterator: str, limit: int) -> RecordsPage:
        self.calls += 1
        if self.expire_every and self.calls % self.expire_every == 0:
            raise IteratorExpired("expired")
        sid, pos = iterator.split("|")
        assert sid == shard_id
        after = [r for r in self.shards[sid] if int(r.sequence) > int(pos)]
        if after and self.rng.random() < 0.2:  # an empty page while behind the tip
            return RecordsPage([], iterator, millis_behind=1000)
        page = after[: self.rng.randint(1, limit)]
        new_pos = page[-1].sequence if page else pos
        if self.info[sid].closed and len(page) == len(after):
            return RecordsPage(page, None, 0, self.children.get(sid, []))
        return RecordsPage(page, f"{sid}|{new_pos}", millis_behind=0 if len(page) == len(after) else 5)


def read_all(reader) -> list[StreamRecord]:
    return [r for chunk in reader for r in chunk]


def drain(k: FakeKinesis, cp: Checkpoint | None = None) -> BatchReader:
    """A reader draining every shard of ``k`` after ``cp`` (a fresh checkpoint by default), no limits."""
    return BatchReader(k, k.list_shards(), cp or Checkpoint("st"), boundary=DrainBoundary(IV), limits=BatchLimits())


def keys(recs):
    return [(r.shard_id, r.sequence) for r in recs]


def test_drains_every_shard_after_the_checkpoint_in_a_deterministic_order():
    k = FakeKinesis(1)
    for s in ("s0", "s1", "s2"):
        k.add_shard(s)
        k.put(s, 250, T0)
    limits = BatchLimits(per_shard_chunk=100)
    r1 = BatchReader(k, k.list_shards(), Checkpoint("st"), boundary=DrainBoundary(IV), limits=limits)
    got = read_all(r1)
    assert sorted(keys(got)) == sorted(keys(sum(k.shards.values(), [])))
    # round robin: 100 from each shard, then the next 100, ... whatever the page sizes were
    assert [s for s, _ in r1.schedule] == ["s0", "s1", "s2"] * 3
    k.rng = random.Random(99)  # other page sizes, same order
    r2 = BatchReader(k, k.list_shards(), Checkpoint("st"), boundary=DrainBoundary(IV), limits=limits)
    assert keys(read_all(r2)) == keys(got)


def test_arrival_boundary_leaves_later_records_for_the_next_batch():
    k = FakeKinesis(2)
    k.add_shard("s0")
    early = k.put("s0", 30, IV.end - timedelta(seconds=1))
    late = k.put("s0", 20, IV.end)
    reader = BatchReader(k, k.list_shards(), Checkpoint("st"), boundary=ArrivalBoundary(IV), limits=BatchLimits())
    assert keys(read_all(reader)) == keys(early)
    plan = reader.plan("b1", IV)
    cp = Checkpoint("st").claim(plan).advance(plan)
    nxt = Interval(IV.end, IV.end + timedelta(minutes=5))
    reader2 = BatchReader(k, k.list_shards(), cp, boundary=ArrivalBoundary(nxt), limits=BatchLimits())
    assert keys(read_all(reader2)) == keys(late)


@pytest.mark.parametrize(("limits", "expected", "why"), [
    (BatchLimits(max_records=130, per_shard_chunk=50), 130, "records"),
    (BatchLimits(max_bytes=12 * 75, per_shard_chunk=50), 75, "bytes"),  # 12 bytes per record (data + key)
])
def test_count_and_byte_limits_cut_the_batch_and_the_next_one_continues(limits, expected, why):
    k = FakeKinesis(3)
    for s in ("s0", "s1"):
        k.add_shard(s)
        k.put(s, 100, T0)
    for r in k.shards["s0"] + k.shards["s1"]:
        assert r.size == 10 + len(r.partition_key)
    k.shards = {s: [StreamRecord(r.shard_id, r.sequence, "k", r.arrival, r.data + b"x") for r in recs]
                for s, recs in k.shards.items()}
    cp, seen = Checkpoint("st"), []
    for i in range(20):
        reader = BatchReader(k, k.list_shards(), cp, boundary=DrainBoundary(IV), limits=limits)
        got = read_all(reader)
        if i == 0:
            assert len(got) == expected and reader.limited == why
        if not got:
            break
        plan = reader.plan(f"b{i:02d}", IV)
        cp = cp.claim(plan).advance(plan)
        seen += got
    assert sorted(keys(seen)) == sorted(keys(k.shards["s0"] + k.shards["s1"]))


def test_children_are_read_only_after_their_parent_is_finished():
    k = FakeKinesis(4)
    k.add_shard("p")
    parent = k.put("p", 40, T0)
    k.add_shard("c1", ("p",))
    k.add_shard("c2", ("p",))
    k.close("p")
    kids = k.put("c1", 10, T0) + k.put("c2", 10, T0)
    reader = BatchReader(k, k.list_shards(), Checkpoint("st"), boundary=DrainBoundary(IV),
                         limits=BatchLimits(per_shard_chunk=15))
    got = read_all(reader)
    assert keys(got[:40]) == keys(parent), "the parent's records come first"
    assert sorted(keys(got[40:])) == sorted(keys(kids))
    plan = reader.plan("b1", IV)
    assert plan.ranges["p"].finished and not plan.ranges["c1"].finished
    cp = Checkpoint("st").claim(plan).advance(plan)
    assert cp.is_finished("p")


def test_parent_cut_by_a_limit_holds_its_children_back():
    k = FakeKinesis(5)
    k.add_shard("p")
    k.put("p", 40, T0)
    k.add_shard("c", ("p",))
    k.close("p")
    k.put("c", 10, T0)
    reader = BatchReader(k, k.list_shards(), Checkpoint("st"), boundary=DrainBoundary(IV),
                         limits=BatchLimits(max_records=30))
    assert {r.shard_id for r in read_all(reader)} == {"p"}
    plan = reader.plan("b1", IV)
    assert not plan.ranges["p"].finished and "c" not in plan.ranges


def test_child_shards_announced_by_the_last_page_are_followed():
    k = FakeKinesis(6)
    k.add_shard("p")
    k.put("p", 5, T0)
    listed = k.list_shards()  # listed before the split
    k.add_shard("c", ("p",))
    k.close("p")
    k.put("c", 5, T0)
    reader = BatchReader(k, listed, Checkpoint("st"), boundary=DrainBoundary(IV), limits=BatchLimits())
    assert [r.shard_id for r in read_all(reader)] == ["p"] * 5 + ["c"] * 5


def test_replay_reads_exactly_the_recorded_ranges_in_the_same_order_despite_new_records():
    k = FakeKinesis(7)
    for s in ("s0", "s1"):
        k.add_shard(s)
        k.put(s, 120, T0)
    k.expire_every = 7
    reader = BatchReader(k, k.list_shards(), Checkpoint("st"), boundary=DrainBoundary(IV),
                         limits=BatchLimits(max_records=200, per_shard_chunk=30))
    first = read_all(reader)
    plan = BatchPlan.from_dict(reader.plan("b1", IV).to_dict())  # through its JSON form
    for s in ("s0", "s1"):
        k.put(s, 50, T0)
    k.rng = random.Random(1234)
    replay = ReplayReader(k, plan, k.list_shards())
    assert keys(read_all(replay)) == keys(first)


def test_replay_fails_clearly_when_records_expired():
    k = FakeKinesis(8)
    k.add_shard("s0")
    k.put("s0", 20, T0)
    reader = drain(k)
    read_all(reader)
    plan = reader.plan("b1", IV)
    k.shards["s0"] = k.shards["s0"][5:]  # trimmed by retention
    with pytest.raises(CheckpointError, match="expired"):
        read_all(ReplayReader(k, plan, k.list_shards()))


def test_a_claim_makes_later_batches_start_after_it_and_a_rerun_replay_it():
    k = FakeKinesis(9)
    k.add_shard("s0")
    k.put("s0", 10, T0)
    r1 = drain(k)
    b1 = read_all(r1)
    cp = Checkpoint("st").claim(r1.plan("b1", IV))  # published? not yet: the run died after claiming
    assert cp.published_position("s0") is None and cp.start_position("s0") == b1[-1].sequence
    later = k.put("s0", 5, T0)
    r2 = drain(k, cp)
    assert keys(read_all(r2)) == keys(later)
    # a plan that read from the start again (an outdated checkpoint) may not be claimed: it would duplicate b1
    stale = drain(k)
    read_all(stale)
    with pytest.raises(CheckpointError, match="re-read"):
        cp.claim(stale.plan("b9", IV))


def test_checkpoint_round_trips_and_never_moves_back():
    k = FakeKinesis(10)
    k.add_shard("s0")
    k.put("s0", 10, T0)
    r = drain(k)
    read_all(r)
    plan = r.plan("b2", IV)
    cp = Checkpoint("st").claim(plan).advance(plan)
    back = Checkpoint.from_json(cp.to_json(), source="mem")
    assert back.shards == cp.shards and back.last_batch == "b2" and not back.pending
    old = BatchPlan("b1", IV, {"s0": plan.ranges["s0"].__class__(after=None, first="1", last="2", records=2)})
    assert back.advance(old).published_position("s0") == cp.published_position("s0")
    with pytest.raises(CheckpointError, match="not valid"):
        Checkpoint.from_json(b"{}", source="s3://x/checkpoint.json")


def test_prefetch_keeps_the_order_and_raises_the_readers_error():
    from s3lander.stream.reader import prefetch

    assert list(prefetch(iter([[1], [2], [3]]), depth=1)) == [[1], [2], [3]]

    def failing():
        yield [1]
        raise CheckpointError("boom")

    with pytest.raises(CheckpointError, match="boom"):
        list(prefetch(failing()))
    stopped = prefetch(iter([[i] for i in range(100)]), depth=2)
    assert next(stopped) == [0]
    stopped.close()  # the consumer failed: the reader thread stops
