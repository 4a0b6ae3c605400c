"""KinesisToS3Operator without I/O: its batch window, datasets and the partitioned output's routing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from s3lander.landing.formats import get_format
from s3lander.landing.intervals import Interval, IntervalError
from s3lander.landing.sink import MemorySink
from s3lander.landing.writer import PartWriter
from s3lander.operators.kinesis_to_s3 import KinesisToS3Operator, PartitionedOutput

T = datetime(2024, 1, 1, 23, 55, tzinfo=timezone.utc)


def test_scheduled_runs_use_the_data_interval_and_event_driven_runs_their_run_after():
    op = KinesisToS3Operator(task_id="t", stream_name="s")
    ctx = {"data_interval_start": T, "data_interval_end": T + timedelta(minutes=5), "params": {}}
    assert op.interval(ctx) == Interval(T, T + timedelta(minutes=5))
    asset_run = {"data_interval_start": None, "data_interval_end": None, "params": {},
                 "dag_run": SimpleNamespace(run_after=T + timedelta(seconds=3, microseconds=5))}
    with pytest.raises(IntervalError):
        op.interval(asset_run)
    ev = KinesisToS3Operator(task_id="t", stream_name="s", event_driven=True)
    assert ev.interval(asset_run) == Interval(T + timedelta(seconds=3), T + timedelta(seconds=4))
    assert ev.datasets() == ["sessions_usa", "sessions_international", "sessions_errors"]


class FakePublisher:
    def __init__(self, dataset: str, hour: Interval) -> None:
        self.dataset, self.hour, self.sinks = dataset, hour, []

    def part_writer(self, fmt, **kw):
        def open_part(i):
            sink = MemorySink(f"{self.dataset}/{self.hour.start:%H}/part-{i}")
            self.sinks.append(sink)
            return sink

        return PartWriter(fmt=fmt, open_part=open_part, max_rows=kw["max_rows"], max_bytes=kw["max_bytes"])


def test_partitioned_output_opens_one_writer_per_dataset_and_hour_and_rolls_parts():
    pubs = {}

    def make(dataset, hour):
        pubs[(dataset, hour.start)] = FakePublisher(dataset, hour)
        return pubs[(dataset, hour.start)]

    out = PartitionedOutput(make_publisher=make, formats={"*": get_format("jsonl.gz")}, schemas={}, max_rows=3,
                            max_bytes=1 << 20, flush_rows=2)
    for i in range(7):
        out.add("a", T.replace(minute=0), {"i": i})
    out.add("b", T.replace(minute=0) - timedelta(hours=5), {"i": 99})
    out.close()
    assert set(pubs) == {("a", T.replace(minute=0)), ("b", T.replace(minute=0) - timedelta(hours=5))}
    assert [f.rows for f in out.writers[("a", T.replace(minute=0))].files] == [3, 3, 1]
    assert out.rows == {"a": 7, "b": 1}


def test_publisher_subpartition_scopes_each_micro_batch_inside_the_event_hour():
    from s3lander.landing.layout import DatasetLocation, LayoutError
    from s3lander.landing.publisher import IntervalPublisher

    loc = DatasetLocation("landing", "raw", "ecommerce", "sessions_usa")
    hour = Interval(T.replace(minute=0), T.replace(minute=0) + timedelta(hours=1))
    plain = IntervalPublisher(client=None, location=loc, interval=hour, run_id="r")
    assert plain.prefix == "raw/ecommerce/sessions_usa/dt=2024-01-01/hour=23/"  # unchanged default
    pub = IntervalPublisher(client=None, location=loc, interval=hour, run_id="r", subpartition="batch=20240101T235500Z")
    assert pub.prefix == "raw/ecommerce/sessions_usa/dt=2024-01-01/hour=23/batch=20240101T235500Z/"
    assert pub.manifest_key == pub.prefix + "_manifest.json"
    with pytest.raises(LayoutError):
        IntervalPublisher(client=None, location=loc, interval=hour, run_id="r", subpartition="../x")
