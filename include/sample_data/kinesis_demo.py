"""Demo data for the Kinesis pattern: browsing-session events on the local stream for ``make demo``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from include.streaming.producer import generate_events, put_events

DEMO_EVENTS = 3000


def prepare_kinesis(stack: Any, start: datetime, end: datetime) -> None:
    """Put 3,000 events (2% malformed) whose event times fill the demo day's last hour.

    The demo runs ``kinesis_to_s3`` once for the interval ending at ``end`` with
    ``boundary=drain`` (the records arrive now, long after that interval), so the run lands
    all of them, partitioned by their event hour.
    """
    svc, state = stack.service("kinesis")
    first = end - timedelta(hours=1)
    spacing = (end - first) / DEMO_EVENTS
    puts = put_events(svc.client(state), state.info["stream"],
                      generate_events(DEMO_EVENTS, seed=42, start=first, spacing=spacing, malformed=0.02))
    print(f"kinesis: put {len(puts)} events on {state.info['stream']}")
