"""``make demo``: start the local stack, seed it, run every DAG for one fixed interval, report.

Runs each DAG of ``dags/`` once with ``dag.test()`` for the interval that ends at
``DEMO_INTERVAL_END`` (daily DAGs land 2024-01-01, hourly DAGs its last hour), prints what
landed where from the published manifests, stops what it started, and exits 1 if any DAG
run failed. Everything lives in a fresh ``.state/demo`` folder.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from include.stack.base import REPO_ROOT

DEMO_INTERVAL_END = datetime(2024, 1, 2, tzinfo=timezone.utc)
#: the whole day the demo seeds data for
DEMO_DAY = (datetime(2024, 1, 1, tzinfo=timezone.utc), DEMO_INTERVAL_END)

#: "module:function" called as f(stack, start, end) to put demo data in place before the runs
PREPARERS: list[str] = [
    "include.sample_data.demo_seed:prepare_mariadb",
    "include.sample_data.partner_files:prepare_sftp",
    "include.sample_data.kinesis_demo:prepare_kinesis",
]
#: per-DAG run conf for the demo
DEMO_CONF: dict[str, dict[str, Any]] = {
    "kinesis_to_s3": {"boundary": "drain"},  # the demo's events arrive now, long after the 2024 interval
}
#: DAGs the demo does not run, with the reason printed in the summary
SKIP: dict[str, str] = {}


def _load(ref: str) -> Any:
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


def summarize(client: Any, bucket: str) -> list[dict[str, Any]]:
    """One row per published manifest in the bucket."""
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/_manifest.json"):
                m = json.loads(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                rows.append({"dataset": m["dataset"], "interval": f"{m['interval']['start'][:16]} .. "
                             f"{m['interval']['end'][:16]}", "objects": m["file_count"], "rows": m["rows"],
                             "bytes": m["bytes"], "where": "s3://" + bucket + "/" + obj["Key"].rsplit("/", 1)[0]})
    return sorted(rows, key=lambda r: (r["dataset"], r["interval"]))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.demo", description=__doc__.splitlines()[0])
    p.add_argument("--state", type=Path, default=REPO_ROOT / ".state" / "demo")
    p.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    p.add_argument("--dag", action="append", help="run only these DAG ids")
    a = p.parse_args(argv)

    state = a.state.resolve()
    if state.exists():
        from include.stack.cli import Stack

        Stack(state).down()
        shutil.rmtree(state)
    state.mkdir(parents=True)
    os.environ["STACK_STATE_DIR"] = str(state)

    from include.stack.airflow import airflow_env, migrate
    from include.stack.cli import DEFAULT_SERVICES, Stack

    env = airflow_env(state / "airflow")
    os.environ.update(env)
    stack = Stack(state)
    results: list[dict[str, Any]] = []
    try:
        t0 = time.monotonic()
        stack.up(DEFAULT_SERVICES)
        os.environ.update(stack.environment())
        print(f"stack up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        for ref in PREPARERS:
            _load(ref)(stack, *DEMO_DAY)
        (state / "airflow").mkdir(exist_ok=True)
        migrate(env)

        from include.runner import dag_ids, failed_tasks, run_dag

        for dag_id in a.dag or dag_ids():
            if dag_id in SKIP:
                results.append({"dag": dag_id, "state": "skipped", "seconds": 0, "note": SKIP[dag_id]})
                continue
            t = time.monotonic()
            try:
                run = run_dag(dag_id, interval_end=DEMO_INTERVAL_END, conf=DEMO_CONF.get(dag_id))
                st, note = str(run.state), ", ".join(failed_tasks(run))
            except Exception as e:  # noqa: BLE001 - the summary reports it and the exit code fails
                st, note = "failed", f"{type(e).__name__}: {e}"[:200]
            results.append({"dag": dag_id, "state": st, "seconds": round(time.monotonic() - t, 1), "note": note})

        svc, s3state = stack.service("s3")
        landed = summarize(svc.client(s3state), s3state.info["bucket"])
        print("\n== DAG runs (interval ending " + DEMO_INTERVAL_END.isoformat() + ")")
        print_table(results, ["dag", "state", "seconds", "note"])
        print("\n== What landed")
        print_table(landed, ["dataset", "interval", "objects", "rows", "bytes", "where"])
    finally:
        if not a.keep:
            stack.down()
    failed = [r["dag"] for r in results if r["state"] not in ("success", "skipped")]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    if not results:
        print("\nno DAG ran", file=sys.stderr)
        return 1
    print(f"\nall {len(results)} DAG runs succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
