"""Exactly-once landing of Kinesis micro-batches against moto's Kinesis server and SeaweedFS S3."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from include.streaming.producer import generate_events, put_events
from tests.integration.kinesis.conftest import checkpoint, landed_rows, manifests, run_batch

pytestmark = pytest.mark.integration

DATASETS = ("sessions_usa", "sessions_international")
T0 = datetime(2024, 1, 1, 22, 0, tzinfo=timezone.utc)


class Killed(BaseException):
    """Stands for the worker being killed at an exact point (not an Exception: nothing may catch it)."""


def produced_keys(puts: list[Any], *, valid: bool = True) -> Counter:
    return Counter((p.session_id, p.shard_id, p.sequence) for p in puts if p.valid == valid)


def landed_keys(s3: Any, source: str) -> Counter:
    return Counter((r["session_id"], r["kinesis_shard_id"], r["kinesis_sequence_number"])
                   for ds in DATASETS for r in landed_rows(s3, source, ds))


def error_keys(s3: Any, source: str) -> Counter:
    return Counter((r["kinesis_partition_key"], r["kinesis_shard_id"], r["kinesis_sequence_number"])
                   for r in landed_rows(s3, source, "sessions_errors"))


def _kill_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> list[int]:
    """Make the n-th checkpoint write (1 = the claim, 2 = the advance) kill the run."""
    from s3lander.operators.kinesis_to_s3 import StreamState

    calls = [0]
    real = StreamState.save_checkpoint

    def save(self: StreamState, cp: Any) -> None:
        calls[0] += 1
        if calls[0] == n:
            raise Killed(f"killed at checkpoint write {n}")
        real(self, cp)

    monkeypatch.setattr(StreamState, "save_checkpoint", save)
    return calls


def test_killed_after_publishing_before_advancing_then_rerun(s3, kinesis_client, fresh_stream, monkeypatch):
    stream, source = fresh_stream(shards=3), f"src{uuid.uuid4().hex[:8]}"
    puts = put_events(kinesis_client, stream, generate_events(1500, seed=7, start=T0, malformed=0.05))
    start, end = T0, T0 + timedelta(minutes=5)

    _kill_on_call(monkeypatch, 2)  # the claim succeeds, the data is published, the advance is killed
    with pytest.raises(Killed):
        run_batch(stream, source, start, end, boundary="drain", part_max_rows=400)
    monkeypatch.undo()
    cp = checkpoint(s3, source, stream)
    assert cp is not None and not cp["shards"] and list(cp["pending"]) == ["20240101T220000Z"]
    first = {k: [(f["key"], f["sha256"]) for f in m["files"]] for k, m in manifests(s3, source).items()}
    assert first, "the killed run had published its partitions"

    more = put_events(kinesis_client, stream, generate_events(300, seed=8, start=T0 + timedelta(minutes=6)))
    summary = run_batch(stream, source, start, end, boundary="drain", part_max_rows=400)
    assert summary["records"] == len(puts)  # replayed the claimed ranges exactly, none of the newer records
    again = {k: [(f["key"], f["sha256"]) for f in m["files"]] for k, m in manifests(s3, source).items()}
    assert again == first, "the rerun rewrote the same objects"
    cp = checkpoint(s3, source, stream)
    assert not cp["pending"] and cp["last_batch"] == "20240101T220000Z"

    assert landed_keys(s3, source) == produced_keys(puts)
    assert error_keys(s3, source) == produced_keys(puts, valid=False)

    # the next interval takes exactly the newer records
    run_batch(stream, source, end, end + timedelta(minutes=5), boundary="drain")
    assert landed_keys(s3, source) == produced_keys(puts + more)
    assert max(landed_keys(s3, source).values()) == 1


def test_a_claim_whose_run_failed_for_good_is_published_by_the_next_run(s3, kinesis_client, fresh_stream,
                                                                          monkeypatch):
    stream, source = fresh_stream(shards=2), f"src{uuid.uuid4().hex[:8]}"
    puts = put_events(kinesis_client, stream, generate_events(600, seed=13, start=T0))
    _kill_on_call(monkeypatch, 2)
    with pytest.raises(Killed):
        run_batch(stream, source, T0, T0 + timedelta(minutes=5), boundary="drain")
    monkeypatch.undo()
    first = {k: m["files"] for k, m in manifests(s3, source).items()}
    more = put_events(kinesis_client, stream, generate_events(150, seed=14, start=T0 + timedelta(minutes=7)))
    # the failed run is never cleared: the next interval's run publishes the orphan claim, then its own batch
    run_batch(stream, source, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10), boundary="drain")
    after = {k: m["files"] for k, m in manifests(s3, source).items()}
    assert {k: after[k] for k in first} == first
    assert landed_keys(s3, source) == produced_keys(puts + more)
    assert not checkpoint(s3, source, stream)["pending"]


def test_killed_before_the_claim_then_rerun(s3, kinesis_client, fresh_stream, monkeypatch):
    stream, source = fresh_stream(shards=2), f"src{uuid.uuid4().hex[:8]}"
    puts = put_events(kinesis_client, stream, generate_events(800, seed=9, start=T0, malformed=0.1))
    start, end = T0, T0 + timedelta(minutes=5)

    _kill_on_call(monkeypatch, 1)  # parts are uploaded, nothing is claimed or published
    with pytest.raises(Killed):
        run_batch(stream, source, start, end, boundary="drain", part_max_rows=100)
    monkeypatch.undo()
    assert manifests(s3, source) == {} and checkpoint(s3, source, stream) is None
    leftovers = s3.list_objects_v2(Bucket="landing", Prefix=f"raw/{source}/").get("KeyCount", 0)
    assert leftovers > 0, "the killed run had uploaded (unpublished) parts"

    more = put_events(kinesis_client, stream, generate_events(200, seed=10, start=T0 + timedelta(minutes=1)))
    run_batch(stream, source, start, end, boundary="drain", part_max_rows=100)
    assert landed_keys(s3, source) == produced_keys(puts + more)
    assert error_keys(s3, source) == produced_keys(puts + more, valid=False)
    reasons = {r["reason"].split(":")[0] for r in landed_rows(s3, source, "sessions_errors")}
    assert {"not JSON", "missing field 'country'"} <= reasons, reasons


def test_limits_leave_the_rest_for_the_next_run(s3, kinesis_client, fresh_stream):
    stream, source = fresh_stream(shards=2), f"src{uuid.uuid4().hex[:8]}"
    puts = put_events(kinesis_client, stream, generate_events(1000, seed=11, start=T0))
    batches = []
    t = T0
    while sum(b["records"] for b in batches) < len(puts):
        batches.append(run_batch(stream, source, t, t + timedelta(minutes=5), boundary="drain", max_records=300,
                                 per_shard_chunk=100, part_max_rows=120))
        t += timedelta(minutes=5)
        assert len(batches) < 10
    assert [b["records"] for b in batches] == [300, 300, 300, 100]
    assert landed_keys(s3, source) == produced_keys(puts)
    for m in manifests(s3, source).values():
        assert all(f["rows"] <= 120 for f in m["files"])
        assert m["extra"]["shard_ranges"], "each manifest records the batch's per-shard ranges"


def test_producer_and_consumer_concurrently(s3, kinesis_client, fresh_stream):
    """A producer puts live for ~6 s while the consumer runs 2-second batches (arrival boundary), like a
    scheduler with catchup off: each run takes the last complete interval. Every record lands once."""
    stream, source = fresh_stream(shards=2), f"src{uuid.uuid4().hex[:8]}"
    puts: list[Any] = []
    done = threading.Event()
    runs_during = [0]

    def produce() -> None:
        """Put at 250 events/s until at least 1,000 events and 3 consumer runs overlapped with it."""
        events = generate_events(100_000, seed=12, malformed=0.02)
        try:
            while len(puts) < 1000 or runs_during[0] < 3:
                puts.extend(put_events(kinesis_client, stream, itertools.islice(events, 50), rate=250))
        finally:
            done.set()

    width = timedelta(seconds=2)

    def last_complete_end() -> datetime:
        now = datetime.now(timezone.utc)
        return now.replace(second=now.second - now.second % 2, microsecond=0)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    runs, last_end, during = 0, None, 0
    while True:
        end = last_complete_end()
        if end == last_end:
            time.sleep(0.1)
            continue
        finished = done.is_set()
        run_batch(stream, source, end - width, end, max_records=400, per_shard_chunk=100)
        runs += 1
        during += 0 if finished else 1
        runs_during[0] = during
        last_end = end
        if finished:
            break
    producer.join()
    # the last records arrived after the last interval, or waited behind the count limit
    t = last_end
    while checkpoint_lag(s3, source, stream, puts):
        run_batch(stream, source, t, t + width, boundary="drain", max_records=400)
        t += width
        assert t - last_end < timedelta(minutes=1), "the consumer did not catch up"
    assert during >= 3
    assert landed_keys(s3, source) == produced_keys(puts)
    assert error_keys(s3, source) == produced_keys(puts, valid=False)


def checkpoint_lag(s3: Any, source: str, stream: str, puts: list[Any]) -> int:
    """Records put but not yet behind the published checkpoint."""
    cp = checkpoint(s3, source, stream) or {"shards": {}}
    pos = {sid: int(p["sequence"] or 0) for sid, p in cp["shards"].items()}
    return sum(1 for p in puts if int(p.sequence) > pos.get(p.shard_id, 0))
