"""The browsing-session producer is deterministic and emits the documented event shape."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from include.streaming.producer import generate_events
from s3lander.stream.events import InvalidEvent, parse_event

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_same_seed_same_events_and_valid_shape():
    a = list(generate_events(200, seed=5, start=T0, spacing=timedelta(seconds=1)))
    b = list(generate_events(200, seed=5, start=T0, spacing=timedelta(seconds=1)))
    assert a == b
    assert a != list(generate_events(200, seed=6, start=T0, spacing=timedelta(seconds=1)))
    for i, e in enumerate(a):
        event = parse_event(e.data)
        assert event["session_id"] == e.session_id
        assert event["event_timestamp"] == T0 + timedelta(seconds=i)
        assert set(json.loads(e.data)) == {"session_id", "customer_number", "city", "country", "credit_limit",
                                           "browse_history", "event_timestamp"}
    assert {parse_event(e.data)["country"] == "USA" for e in a} == {True, False}


def test_malformed_share_produces_records_the_consumer_rejects():
    events = list(generate_events(400, seed=1, start=T0, malformed=0.25))
    bad = [e for e in events if not e.valid]
    assert 50 < len(bad) < 150
    for e in bad:
        try:
            parse_event(e.data)
        except InvalidEvent:
            continue
        raise AssertionError(f"malformed record was accepted: {e.data[:80]!r}")
