"""E-commerce browsing-session events onto a Kinesis data stream, at a chosen rate, from a seed.

``python -m include.streaming.producer --count 5000 --rate 500 [--seed 42] [--stream browsing-sessions]``
puts events (partition key ``session_id``) through the ``kinesis_default`` connection taken
from ``AIRFLOW_CONN_KINESIS_DEFAULT`` (``make stack-up`` writes it to ``.state/airflow.env``),
or from the local stack's state folder with ``--state``.

The events are deterministic: the same seed, count and start time give the same events
(``generate_events``). ``--malformed 0.05`` mixes in that share of bad records (non-JSON,
missing fields, wrong types) to exercise the errors dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

#: (city, country) of classicmodels-like customers: about half of the sessions are in the USA
PLACES = [
    ("NYC", "USA"), ("San Francisco", "USA"), ("Boston", "USA"), ("Las Vegas", "USA"), ("San Rafael", "USA"),
    ("Philadelphia", "USA"), ("Nantes", "France"), ("Madrid", "Spain"), ("Melbourne", "Australia"),
    ("Singapore", "Singapore"), ("Tokyo", "Japan"), ("London", "UK"), ("Frankfurt", "Germany"),
    ("Torino", "Italy"), ("Montreal", "Canada"), ("Auckland", "New Zealand"),
]
PRODUCT_CODES = [f"S{scale}_{n:04d}" for scale in (10, 12, 18, 24, 32, 50, 72, 700) for n in range(1000, 1025)]
MAX_PUT_RECORDS = 500  # PutRecords accepts at most 500 records (and 5 MiB) per call


@dataclass(frozen=True)
class Event:
    """One produced record: its partition key and bytes (``valid`` False for an intentionally bad one)."""

    session_id: str
    data: bytes
    valid: bool = True


def make_event(rng: random.Random, ts: datetime) -> dict[str, Any]:
    city, country = rng.choice(PLACES)
    history = [{"product_code": code, "quantity": rng.randint(1, 5), "in_shopping_cart": rng.random() < 0.4}
               for code in rng.sample(PRODUCT_CODES, rng.randint(1, 6))]
    if rng.random() < 0.2:  # the same product browsed twice in one session
        history.append({**history[0], "quantity": rng.randint(1, 3)})
    return {
        "session_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "customer_number": rng.randint(103, 496),
        "city": city,
        "country": country,
        "credit_limit": round(rng.randint(0, 2_000) * 100 + rng.choice([0, 0.5, 0.99]), 2),
        "browse_history": history,
        "event_timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _malformed(rng: random.Random, event: dict[str, Any]) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return b"not json: " + event["session_id"].encode()
    if kind == 1:
        return json.dumps({k: v for k, v in event.items() if k != "country"}).encode()
    if kind == 2:
        return json.dumps({**event, "browse_history": [{"product_code": "S10_1000", "quantity": "two",
                                                        "in_shopping_cart": True}]}).encode()
    return json.dumps([event]).encode()


def generate_events(count: int, *, seed: int = 42, start: datetime | None = None, spacing: timedelta | None = None,
                    malformed: float = 0.0) -> Iterator[Event]:
    """``count`` events with event timestamps ``start + i * spacing``; the same arguments, the same events."""
    rng = random.Random(seed)
    start = start or datetime.now(timezone.utc).replace(microsecond=0)
    spacing = spacing if spacing is not None else timedelta(milliseconds=10)
    for i in range(count):
        event = make_event(rng, start + i * spacing)
        if malformed and rng.random() < malformed:
            yield Event(event["session_id"], _malformed(rng, event), valid=False)
        else:
            yield Event(event["session_id"], json.dumps(event, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Put:
    """Where Kinesis stored one event."""

    session_id: str
    shard_id: str
    sequence: str
    valid: bool
    put_at: float  # time.time() when PutRecords returned


def put_events(client: Any, stream: str, events: Iterable[Event], *, rate: float | None = None,
               batch: int = MAX_PUT_RECORDS, max_attempts: int = 10) -> list[Put]:
    """PutRecords ``events`` at about ``rate`` records/s (None: as fast as possible); retry throttled entries.

    Returns where each event landed (shard and sequence), in put order.
    """
    batch = max(1, min(batch, MAX_PUT_RECORDS))
    if rate:
        batch = max(1, min(batch, int(rate / 10) or 1))  # ~10 calls/s keeps the rate smooth
    out: list[Put] = []
    t0 = time.monotonic()
    sent = 0
    buf: list[Event] = []

    def flush() -> None:
        nonlocal sent, buf
        todo = list(buf)
        buf = []
        for attempt in range(max_attempts):
            resp = client.put_records(StreamName=stream, Records=[
                {"Data": e.data, "PartitionKey": e.session_id} for e in todo])
            now = time.time()
            retry = []
            for e, r in zip(todo, resp["Records"]):
                if "SequenceNumber" in r:
                    out.append(Put(e.session_id, r["ShardId"], r["SequenceNumber"], e.valid, now))
                else:
                    retry.append(e)
            if not retry:
                break
            todo = retry
            time.sleep(min(0.1 * 2 ** attempt, 2.0))
        else:
            raise RuntimeError(f"PutRecords to {stream}: {len(todo)} records still throttled after "
                               f"{max_attempts} attempts")
        sent = len(out)
        if rate:
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    for e in events:
        buf.append(e)
        if len(buf) >= batch:
            flush()
    if buf:
        flush()
    return out


def client_from_connection(conn_json: str) -> Any:
    """A boto3 Kinesis client from an Airflow ``aws`` connection in JSON form (what AIRFLOW_CONN_* holds)."""
    import boto3

    conn = json.loads(conn_json)
    extra = conn.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    return boto3.client("kinesis", endpoint_url=extra.get("endpoint_url"),
                        region_name=extra.get("region_name", "us-east-1"),
                        aws_access_key_id=conn.get("login"), aws_secret_access_key=conn.get("password"))


def _client(state: Path | None, conn_id: str) -> Any:
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    if state is not None:
        from include.stack.cli import Stack

        value = Stack(state).environment().get(var)
    else:
        value = os.environ.get(var)
    if not value:
        raise SystemExit(f"no {var}: start the stack (make stack-up) and pass --state, or export the connection")
    return client_from_connection(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.streaming.producer", description=__doc__.splitlines()[0])
    p.add_argument("--stream", default=os.environ.get("KINESIS_STREAM", "browsing-sessions"))
    p.add_argument("--count", type=int, default=1000, help="events to put")
    p.add_argument("--rate", type=float, default=200.0, help="events per second (0: as fast as possible)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--start", default=None, help="event timestamp of the first event (ISO-8601, default now)")
    p.add_argument("--spacing-ms", type=float, default=None, help="event-time spacing (default 1000/rate)")
    p.add_argument("--malformed", type=float, default=0.0, help="share of deliberately bad records (0..1)")
    p.add_argument("--conn-id", default="kinesis_default")
    p.add_argument("--state", type=Path, default=None, help="local stack state folder (else AIRFLOW_CONN_*)")
    a = p.parse_args(argv)
    start = datetime.fromisoformat(a.start.replace("Z", "+00:00")) if a.start else None
    spacing_ms = a.spacing_ms if a.spacing_ms is not None else (1000.0 / a.rate if a.rate else 10.0)
    client = _client(a.state, a.conn_id)
    t0 = time.monotonic()
    puts = put_events(client, a.stream, generate_events(a.count, seed=a.seed, start=start,
                                                        spacing=timedelta(milliseconds=spacing_ms),
                                                        malformed=a.malformed), rate=a.rate or None)
    wall = time.monotonic() - t0
    shards = sorted({x.shard_id for x in puts})
    print(f"put {len(puts)} events ({sum(not x.valid for x in puts)} malformed) on {a.stream} "
          f"({len(shards)} shards) in {wall:.1f} s: {len(puts) / max(wall, 1e-9):.0f} events/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
