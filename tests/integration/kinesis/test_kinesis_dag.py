"""The real ``kinesis_to_s3`` DAG (dag.test) against moto's Kinesis server and SeaweedFS."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from include.streaming.producer import generate_events, put_events
from tests.integration.kinesis.conftest import checkpoint, landed_rows, manifests

pytestmark = pytest.mark.integration

END = datetime(2024, 1, 2, tzinfo=timezone.utc)


def test_dag_lands_enriched_routed_sessions_and_a_rerun_rewrites_the_same_objects(s3, kinesis, airflow_db):
    from include.runner import failed_tasks, run_dag

    svc, state = kinesis
    stream = state.info["stream"]
    events = list(generate_events(600, seed=3, start=END - timedelta(minutes=90), spacing=timedelta(seconds=9),
                                  malformed=0.05))
    puts = put_events(svc.client(state), stream, events)
    conf = {"boundary": "drain", "part_max_rows": 150}

    run = run_dag("kinesis_to_s3", interval_end=END, conf=conf)
    assert run.state == "success", failed_tasks(run)

    valid = {e.session_id: json.loads(e.data) for e in events if e.valid}
    usa = landed_rows(s3, "ecommerce", "sessions_usa")
    intl = landed_rows(s3, "ecommerce", "sessions_international")
    assert {r["country"] for r in usa} == {"USA"} and "USA" not in {r["country"] for r in intl}
    assert Counter(r["session_id"] for r in usa + intl) == Counter(valid.keys())
    for row in usa + intl:
        src = valid[row["session_id"]]
        history = src["browse_history"]
        assert row["overall_product_quantity"] == sum(i["quantity"] for i in history)
        assert row["overall_in_shopping_cart"] == sum(i["quantity"] for i in history if i["in_shopping_cart"])
        assert row["total_different_products"] == len({i["product_code"] for i in history})
        assert row["credit_limit"] == Decimal(str(src["credit_limit"])).quantize(Decimal("0.01"))
        assert row["processing_timestamp"] == END  # from the run's interval, not the wall clock
        assert row["event_timestamp"].isoformat(timespec="milliseconds") == \
            src["event_timestamp"].replace("Z", "+00:00")
    errors = landed_rows(s3, "ecommerce", "sessions_errors")
    assert sorted(r["kinesis_partition_key"] for r in errors) == sorted(e.session_id for e in events if not e.valid)
    assert all(r["reason"] for r in errors)

    published = manifests(s3, "ecommerce")
    # partitioned by event hour (22h and 23h of 2024-01-01), scoped to the run's batch
    hours = {k.split("/")[3] + "/" + k.split("/")[4] for k in published if "sessions_errors" not in k}
    assert hours == {"dt=2024-01-01/hour=22", "dt=2024-01-01/hour=23"}
    assert all("/batch=20240101T235500Z/" in k for k in published)
    # errors have no trustworthy event time: they land in the batch's hour
    assert {k.split("/")[3] + "/" + k.split("/")[4] for k in published if "sessions_errors" in k} == \
        {"dt=2024-01-01/hour=23"}
    assert all(f["rows"] <= 150 for m in published.values() for f in m["files"])
    cp = checkpoint(s3, "ecommerce", stream)
    assert not cp["pending"]
    assert {sid: int(p["sequence"]) for sid, p in cp["shards"].items()} == {
        sid: max(int(p.sequence) for p in puts if p.shard_id == sid) for sid in {p.shard_id for p in puts}}

    again = run_dag("kinesis_to_s3", interval_end=END, conf=conf)
    assert again.state == "success", failed_tasks(again)
    republished = manifests(s3, "ecommerce")
    assert {k: m["files"] for k, m in republished.items()} == {k: m["files"] for k, m in published.items()}
