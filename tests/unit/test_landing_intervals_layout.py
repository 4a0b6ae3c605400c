"""Interval maths and the key layout: pure, no Airflow, no network."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from s3lander.landing.intervals import Interval, IntervalError, as_utc, interval_from_context
from s3lander.landing.layout import DatasetLocation, LayoutError, parse_partition, part_name, partition_path

UTC = timezone.utc


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_interval_is_half_open_and_utc():
    cet = timezone(timedelta(hours=1))
    iv = Interval(datetime(2024, 1, 1, 1, tzinfo=cet), datetime(2024, 1, 1, 2, tzinfo=cet))
    assert iv.start == utc(2024, 1, 1, 0) and iv.start.tzinfo == UTC
    assert iv.contains(utc(2024, 1, 1, 0)) and not iv.contains(utc(2024, 1, 1, 1))
    assert iv.width == timedelta(hours=1)


@pytest.mark.parametrize("start,end", [(utc(2024, 1, 1, 1), utc(2024, 1, 1, 1)), (utc(2024, 1, 2), utc(2024, 1, 1))])
def test_empty_or_reversed_interval_is_refused_with_the_timetable_hint(start, end):
    with pytest.raises(IntervalError, match="CronDataIntervalTimetable"):
        Interval(start, end)


def test_naive_timestamps_are_refused_not_guessed():
    with pytest.raises(IntervalError, match="no time zone"):
        as_utc(datetime(2024, 1, 1))
    with pytest.raises(IntervalError, match="not an ISO-8601"):
        as_utc("yesterday", what="window_start")


def test_microseconds_survive_normalisation():
    assert as_utc("2024-01-01T00:00:00.123456+02:00") == datetime(2023, 12, 31, 22, 0, 0, 123456, tzinfo=UTC)


def test_split_covers_exactly_without_overlap():
    iv = Interval(utc(2024, 1, 1), utc(2024, 1, 3))
    parts = list(iv.split(timedelta(hours=1)))
    assert len(parts) == 48
    assert parts[0].start == iv.start and parts[-1].end == iv.end
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    uneven = list(Interval(utc(2024, 1, 1), utc(2024, 1, 1, 2, 30)).split(timedelta(hours=1)))
    assert [p.width for p in uneven] == [timedelta(hours=1), timedelta(hours=1), timedelta(minutes=30)]


def test_lookback_opens_the_window_earlier_only():
    iv = Interval(utc(2024, 1, 1, 5), utc(2024, 1, 1, 6)).with_lookback(timedelta(minutes=15))
    assert iv == Interval(utc(2024, 1, 1, 4, 45), utc(2024, 1, 1, 6))


def test_interval_round_trips_through_dict():
    iv = Interval(utc(2024, 1, 1, 5), utc(2024, 1, 1, 6))
    assert Interval.from_dict(iv.to_dict()) == iv


def test_context_interval_and_param_override():
    ctx = {"data_interval_start": utc(2024, 1, 1, 5), "data_interval_end": utc(2024, 1, 1, 6), "params": {}}
    assert interval_from_context(ctx) == Interval(utc(2024, 1, 1, 5), utc(2024, 1, 1, 6))
    ctx["params"] = {"window_start": "2024-01-01T00:00:00+00:00", "window_end": None}
    assert interval_from_context(ctx) == Interval(utc(2024, 1, 1, 0), utc(2024, 1, 1, 6))


def test_zero_width_context_interval_fails_clearly():
    ctx = {"data_interval_start": utc(2024, 1, 1, 5), "data_interval_end": utc(2024, 1, 1, 5), "params": {}}
    with pytest.raises(IntervalError, match="data-interval timetable"):
        interval_from_context(ctx)


def test_key_layout_from_interval_start():
    loc = DatasetLocation("landing", "raw", "mysql", "orders")
    iv = Interval(utc(2024, 3, 9, 7), utc(2024, 3, 9, 8))
    assert loc.part_key(iv, 3, "parquet") == "raw/mysql/orders/dt=2024-03-09/hour=07/part-00003.parquet"
    assert loc.manifest_key(iv) == "raw/mysql/orders/dt=2024-03-09/hour=07/_manifest.json"
    assert loc.part_key(iv, 0, ".jsonl.gz", stem="part-r002") == \
        "raw/mysql/orders/dt=2024-03-09/hour=07/part-r002-00000.jsonl.gz"
    assert loc.state_key("latest.json") == "raw/mysql/orders/_state/latest.json"
    assert loc.uri == "s3://landing/raw/mysql/orders/" and loc.name == "raw.mysql.orders"
    assert parse_partition(loc.part_key(iv, 0, "parquet")) == iv.start
    assert parse_partition("raw/x/y/other") is None


def test_daily_interval_lands_in_hour_00():
    assert partition_path(Interval(utc(2024, 1, 1), utc(2024, 1, 2))) == "dt=2024-01-01/hour=00/"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 129, "sp ace", "é"])
def test_unsafe_segments_are_refused_naming_the_input(bad):
    with pytest.raises(LayoutError, match="dataset"):
        DatasetLocation("landing", "raw", "mysql", bad)


def test_part_index_bounds():
    with pytest.raises(LayoutError):
        part_name(100_000, "parquet")
    assert part_name(99_999, "parquet") == "part-99999.parquet"


@pytest.mark.parametrize("endpoint,unsigned", [
    (None, False), ("https://s3.eu-west-1.amazonaws.com", False), ("https://minio.internal:9000", False),
    ("http://127.0.0.1:8333", True), ("HTTP://minio:9000", True)])
def test_upload_bodies_are_checked_exactly_once(endpoint, unsigned):
    from s3lander.hooks.landing import crc_instead_of_signed_payload

    assert crc_instead_of_signed_payload(endpoint) is unsigned
