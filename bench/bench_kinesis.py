"""``make bench B=kinesis``: Kinesis -> S3 micro-batches, end to end, next to the raw GetRecords limit.

Starts its own stack (SeaweedFS S3 + moto's Kinesis server), puts N browsing-session events
on a 4-shard stream, then measures, each subject as its own process on the same data:

``limit``  raw GetRecords of the same server: every shard from TRIM_HORIZON, 10,000 per call,
           nothing else (no decoding) — the fastest anything can read this server.
``ours``   KinesisToS3Operator for one batch covering the whole stream: read, validate,
           enrich, route, write Parquet parts, publish manifests, advance the checkpoint.

Then the lag: a producer puts events at a fixed rate while the consumer runs batches back to
back (boundary ``drain``); for every record, lag = when its batch was published (visible in
S3 through its manifest) minus when PutRecords returned. p50/p95/max are reported.

moto is a single-threaded Python server whose PutRecord/GetRecords cost grows with the shard's
length (hence moderate sizes over 8 shards), and the machine is shared with other jobs: the
absolute figures are noisy and say more about moto than about Kinesis; the ratio to the limit
measured in the same invocation is the meaningful number.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import Recorder, report_peak, run_measured

SIZES = [int(x) for x in os.environ.get("BENCH_KINESIS_SIZES", "10000,40000").split(",")]
SHARDS = 8
LAG_RATE = int(os.environ.get("BENCH_KINESIS_LAG_RATE", "500"))
LAG_SECONDS = int(os.environ.get("BENCH_KINESIS_LAG_SECONDS", "20"))
T0 = datetime(2024, 1, 1, 22, tzinfo=timezone.utc)


# --- subjects (run as ``python -m bench.bench_kinesis <subject> <stream> <source>``) -----------------
def _subject_limit(stream: str) -> None:
    from include.streaming.producer import client_from_connection

    client = client_from_connection(os.environ["AIRFLOW_CONN_KINESIS_DEFAULT"])
    t0 = time.perf_counter()
    n = nbytes = 0
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            resp = client.get_records(ShardIterator=it, Limit=10_000)
            n += len(resp["Records"])
            nbytes += sum(len(r["Data"]) for r in resp["Records"])
            if not resp["Records"] and not resp.get("MillisBehindLatest"):
                break
            it = resp.get("NextShardIterator")
    print(f"RECORDS={n}\nBYTES={nbytes}\nELAPSED={time.perf_counter() - t0:.4f}")
    report_peak()


def _subject_ours(stream: str, source: str) -> None:
    from s3lander.operators.kinesis_to_s3 import KinesisToS3Operator

    op = KinesisToS3Operator(task_id="land_stream", stream_name=stream, source=source, boundary="drain",
                             part_max_bytes=16 * 1024 * 1024)
    t0 = time.perf_counter()
    out = op.execute({"data_interval_start": T0, "data_interval_end": T0 + timedelta(minutes=5), "params": {},
                      "run_id": "bench"})
    print(f"RECORDS={out['records']}\nELAPSED={time.perf_counter() - t0:.4f}\nSUMMARY={json.dumps(out)}")
    report_peak()


def _figure(out: str, name: str) -> float:
    for line in out.splitlines():
        if line.startswith(f"{name}="):
            return float(line.split("=", 1)[1])
    raise RuntimeError(f"subject printed no {name}=:\n{out[-2000:]}")


# --- the benchmark ---------------------------------------------------------------------------
def _lag(rec: Recorder, client: Any, stream: str, source: str) -> None:
    from include.streaming.producer import generate_events, put_events
    from s3lander.operators.kinesis_to_s3 import KinesisToS3Operator

    puts: list[Any] = []
    done = threading.Event()

    def produce() -> None:
        """Put at LAG_RATE events/s, publishing each call's results at once (so put_at is known live)."""
        events = generate_events(LAG_RATE * LAG_SECONDS, seed=2)
        step = max(1, LAG_RATE // 10)
        t0 = time.monotonic()
        try:
            while chunk := list(itertools.islice(events, step)):
                puts.extend(put_events(client, stream, chunk))
                ahead = len(puts) / LAG_RATE - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        finally:
            done.set()

    visible: dict[tuple[str, str], float] = {}
    pos: dict[str, int] = {}
    seen = 0  # puts before this index are all visible already
    op = KinesisToS3Operator(task_id="land_stream", stream_name=stream, source=source, boundary="drain")
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    t = datetime(2030, 1, 1, tzinfo=timezone.utc)
    batches = 0
    while True:
        finished = done.is_set()
        out = op.execute({"data_interval_start": t, "data_interval_end": t + timedelta(seconds=1), "params": {},
                          "run_id": f"lag{batches}"})
        now = time.time()
        batches += 1
        t += timedelta(seconds=1)
        cp = json.loads(op.landing.store.get_bytes(op.landing.bucket,
                                                   f"raw/{source}/{stream}/_state/checkpoint.json"))
        for sid, p in cp["shards"].items():
            pos[sid] = int(p["sequence"] or 0)
        snapshot = puts[:len(puts)]
        for p in snapshot[seen:]:
            key = (p.shard_id, p.sequence)
            if key not in visible and int(p.sequence) <= pos.get(p.shard_id, 0):
                visible[key] = now
        while seen < len(snapshot) and (snapshot[seen].shard_id, snapshot[seen].sequence) in visible:
            seen += 1
        if finished and out["records"] == 0:
            break
    producer.join()
    lags = sorted(visible[(p.shard_id, p.sequence)] - p.put_at for p in puts)
    assert len(lags) == len(puts), f"{len(puts) - len(lags)} records never became visible"
    size = f"{LAG_RATE}/s x {LAG_SECONDS}s"
    rec.record("ours", "lag_p50_s", lags[len(lags) // 2], size)
    rec.record("ours", "lag_p95_s", lags[int(len(lags) * 0.95)], size)
    rec.record("ours", "lag_max_s", lags[-1], size)
    rec.record("ours", "batches", batches, size)


def main() -> None:
    from include.stack.cli import Stack
    from include.stack.services.kinesis import ensure_stream
    from include.streaming.producer import generate_events, put_events

    rec = Recorder("kinesis")
    tmp = Path(tempfile.mkdtemp(prefix="bench-kinesis-"))
    airflow_home = tmp / "airflow"
    airflow_home.mkdir()
    stack = Stack(tmp / "stack")
    try:
        stack.up(["s3", "kinesis"])
        env = {**stack.environment(), "AIRFLOW_HOME": str(airflow_home),
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "plugins"),
                                              str(Path(__file__).resolve().parents[1])])}
        os.environ.update(env)
        svc, state = stack.service("kinesis")
        client = svc.client(state)
        for n in SIZES:
            stream, source = f"bench-{n}", f"bench{n}"
            ensure_stream(client, stream, shards=SHARDS)
            t0 = time.perf_counter()
            puts = put_events(client, stream, generate_events(n, seed=1, start=T0, malformed=0.01))
            put_s = time.perf_counter() - t0
            size = f"{n} records"
            rec.record("producer", "rows_per_s", len(puts) / put_s, size)
            me = sys.executable
            limit = run_measured([me, "-m", "bench.bench_kinesis", "limit", stream], env=env)
            ours = run_measured([me, "-m", "bench.bench_kinesis", "ours", stream, source], env=env)
            for subject, m in (("limit: raw get_records", limit), ("ours", ours)):
                got = _figure(m.stdout, "RECORDS")
                assert got == n, f"{subject} read {got} of {n} records"
                elapsed = _figure(m.stdout, "ELAPSED")
                rec.record(subject, "wall_s", elapsed, size)
                rec.record(subject, "rows_per_s", n / elapsed, size)
                rec.record(subject, "peak_rss_mb", m.peak_rss_mb, size)
        lag_stream = "bench-lag"
        ensure_stream(client, lag_stream, shards=SHARDS)
        _lag(rec, client, lag_stream, "benchlag")
    finally:
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)
    rec.table()
    print("\nnote: moto's server is single-threaded Python and this machine is shared: figures are noisy; "
          "compare ours with the limit measured in the same run.")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "limit":
        _subject_limit(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "ours":
        _subject_ours(sys.argv[2], sys.argv[3])
    else:
        main()
