"""Validation, enrichment, routing and batch limits of the streaming pattern (pure functions)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from s3lander.landing.intervals import Interval
from s3lander.stream.batching import ArrivalBoundary, BatchLimits, DrainBoundary, batch_id, get_boundary
from s3lander.stream.events import InvalidEvent, StreamRecord, enrich, error_row, parse_event
from s3lander.stream.routing import CountryRouter, get_router, partition_hour

T0 = datetime(2024, 1, 1, 23, 55, tzinfo=timezone.utc)
GOOD = {"session_id": "abc", "customer_number": 103, "city": "Nantes", "country": "France", "credit_limit": 21000.5,
        "event_timestamp": "2024-01-01T23:59:58.123Z",
        "browse_history": [{"product_code": "S10_1678", "quantity": 2, "in_shopping_cart": True},
                           {"product_code": "S12_1099", "quantity": 3, "in_shopping_cart": False},
                           {"product_code": "S10_1678", "quantity": 1, "in_shopping_cart": True}]}
REC = StreamRecord("shardId-000000000000", "42", "abc", T0, b"")


def raw(**changes):
    return json.dumps({**GOOD, **changes}).encode()


def test_valid_event_is_typed_and_enriched_from_the_run_not_the_clock():
    event = parse_event(raw())
    assert event["credit_limit"] == Decimal("21000.50")
    assert event["event_timestamp"] == datetime(2024, 1, 1, 23, 59, 58, 123000, tzinfo=timezone.utc)
    row = enrich(event, REC, processed_at=T0 + timedelta(minutes=5))
    assert row["overall_product_quantity"] == 6
    assert row["overall_in_shopping_cart"] == 3
    assert row["total_different_products"] == 2
    assert row["processing_timestamp"] == datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert (row["kinesis_shard_id"], row["kinesis_sequence_number"]) == ("shardId-000000000000", "42")


@pytest.mark.parametrize(("data", "reason"), [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "not a JSON object but a list"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "country"}).encode(), "missing field 'country'"),
    (raw(customer_number="103"), "field 'customer_number' must be an integer"),
    (raw(customer_number=True), "field 'customer_number' must be an integer"),
    (raw(session_id=" "), "field 'session_id' is empty"),
    (raw(credit_limit="lots"), "field 'credit_limit' 'lots' is not a number"),
    (raw(event_timestamp="2024-01-01T23:59:58"), "has no time zone"),
    (raw(event_timestamp="yesterday"), "is not an ISO-8601 timestamp"),
    (raw(browse_history={}), "field 'browse_history' must be a list"),
    (raw(browse_history=[{"product_code": "x", "quantity": -1, "in_shopping_cart": True}]), "must not be negative"),
    (raw(browse_history=[{"product_code": "x", "quantity": 1}]), "missing field 'browse_history[0].in_shopping_cart'"),
    (raw(browse_history=["x"]), "'browse_history[0]' must be an object"),
])
def test_malformed_records_are_rejected_with_the_reason(data, reason):
    with pytest.raises(InvalidEvent) as e:
        parse_event(data)
    assert reason in str(e.value)


def test_error_row_keeps_the_exact_bytes_and_the_reason():
    rec = StreamRecord("s", "7", "pk", T0, b"\xffbad")
    row = error_row(rec, "not UTF-8 text", processed_at=T0)
    assert row["reason"] == "not UTF-8 text" and row["data_base64"] == "/2JhZA=="
    assert row["data_text"].endswith("bad")


def test_epoch_millis_timestamps_are_accepted():
    assert parse_event(raw(event_timestamp=1704153598123))["event_timestamp"] == \
        datetime(2024, 1, 1, 23, 59, 58, 123000, tzinfo=timezone.utc)


def test_country_router_and_partition_hour():
    router = CountryRouter()
    assert router.route({"country": " usa"}) == "sessions_usa"
    assert router.route({"country": "France"}) == "sessions_international"
    assert get_router("country", home_countries=["Canada"]).route({"country": "canada"}) == "sessions_usa"
    assert get_router("single", dataset="all").datasets() == ["all"]
    with pytest.raises(ValueError, match="unknown router"):
        get_router("nope")
    assert partition_hour(datetime(2024, 1, 1, 23, 59, 58, tzinfo=timezone.utc)) == \
        datetime(2024, 1, 1, 23, tzinfo=timezone.utc)


def test_boundaries_and_limits():
    iv = Interval(T0, T0 + timedelta(minutes=5))
    assert ArrivalBoundary(iv).admits(iv.end - timedelta(microseconds=1))
    assert not ArrivalBoundary(iv).admits(iv.end)
    assert DrainBoundary(iv).admits(iv.end + timedelta(days=1))
    assert isinstance(get_boundary("arrival", iv), ArrivalBoundary)
    with pytest.raises(ValueError, match="unknown batch boundary"):
        get_boundary("size", iv)
    assert BatchLimits.from_params(max_records="10", max_bytes=None).max_records == 10
    with pytest.raises(ValueError, match="max_records"):
        BatchLimits.from_params(max_records="ten")
    with pytest.raises(ValueError, match="positive"):
        BatchLimits(max_bytes=0)
    assert batch_id(iv) == "20240101T235500Z"
