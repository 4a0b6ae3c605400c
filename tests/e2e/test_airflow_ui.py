"""Operate the main job from the Airflow UI in a real browser, as a user does.

Against ``make up`` on loopback: sign in, open ``mysql_to_s3_hourly``, trigger it with params
through the trigger form (invalid params refused by the form), wait for success in the grid,
backfill three hours from the UI's backfill dialog and check on S3 that exactly three
partitions with manifests landed; then backfill the same hours through ``/api/v2/backfills``
with "reprocess all" (``completed``) twice and check the objects are the same each time.
Screenshots of the grid and of the asset graph are saved to ``docs/img/`` for the README.

The tests of this module run in order and build on each other (one stack, one browser page).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AirflowUp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "mysql_to_s3_hourly"
TABLE = "orders"
PREFIX = f"raw/classicmodels/{TABLE}/"
BACKFILL_FROM = datetime(2024, 1, 1, 1, tzinfo=timezone.utc)  # logical dates 01:00, 02:00, 03:00:
BACKFILL_TO = datetime(2024, 1, 1, 3, tzinfo=timezone.utc)  # the hours [01, 02), [02, 03), [03, 04)
BACKFILL_HOURS = ["01", "02", "03"]
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"

_snapshots: dict[str, dict[str, Any]] = {}


# --- page helpers -------------------------------------------------------------------------
def _field(dialog: Any, label: str) -> Any:
    """The form field (Chakra field root) whose label starts with ``label``."""
    return dialog.locator("[data-scope=field][data-part=root]").filter(
        has=dialog.page.locator("label", has_text=re.compile(rf"^\s*{re.escape(label)}"))).first


def _set_datetime(page: Any, trigger: Any, value: datetime) -> None:
    """Fill one of the UI's date-time pickers (a popover with a date and a time input)."""
    trigger.click()
    pop = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    pop.locator("input[placeholder='YYYY/MM/DD']").fill(value.strftime("%Y/%m/%d"))
    pop.locator("input[placeholder='HH:mm']").fill(value.strftime("%H:%M"))
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    if pop.count():
        page.keyboard.press("Escape")
    assert value.strftime("%H:%M") in trigger.inner_text(), trigger.inner_text()


def _open_trigger_dialog(page: Any, airflow_up: AirflowUp) -> Any:
    page.goto(f"{airflow_up.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def _set_tables(dialog: Any, text: str) -> None:
    box = dialog.locator("textarea[name=element_tables]")
    box.fill(text)
    box.blur()  # the form validates and copies the field into the run conf on blur


def _wait_run_state_in_ui(page: Any, url: str, timeout: float = 240) -> str:
    """Reload the run's page until its header badge shows a final state; return it."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        page.goto(url)
        badge = page.get_by_test_id("state-badge").first
        badge.wait_for()
        state = badge.inner_text().strip().lower()
        if state in ("success", "failed"):
            return state
        page.wait_for_timeout(3000)
    raise AssertionError(f"the run at {url} is still {state!r} after {timeout:.0f} s")


def _wait_backfill(airflow_up: AirflowUp, backfill_id: int, timeout: float = 300) -> list[dict[str, Any]]:
    """Wait until the backfill completes; return its DAG runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bf = airflow_up.api("GET", f"/api/v2/backfills/{backfill_id}")
        if bf["completed_at"]:
            break
        time.sleep(3)
    else:
        raise AssertionError(f"backfill {backfill_id} not complete after {timeout:.0f} s")
    runs = airflow_up.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=backfill&limit=100")["dag_runs"]
    return [r for r in runs if r.get("backfill_id") in (None, backfill_id)]


# --- S3 helpers -----------------------------------------------------------------------------
def _landed(airflow_up: AirflowUp, day: str, hours: list[str]) -> dict[str, Any]:
    """The published partitions of ``hours`` of ``day``: per hour, the manifest's files and the objects."""
    s3 = airflow_up.s3()
    out: dict[str, Any] = {}
    for hour in hours:
        prefix = f"{PREFIX}dt={day}/hour={hour}/"
        objects = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket="landing", Prefix=prefix).get("Contents", [])}
        if prefix + "_manifest.json" not in objects:
            continue
        manifest = json.loads(s3.get_object(Bucket="landing", Key=prefix + "_manifest.json")["Body"].read())
        out[hour] = {"interval": manifest["interval"],
                     "files": sorted((f["key"], f["sha256"], f["rows"]) for f in manifest["files"]),
                     "objects": {k: v for k, v in objects.items() if not k.endswith("_manifest.json")}}
    return out


def _partitions(airflow_up: AirflowUp, day: str) -> list[str]:
    s3 = airflow_up.s3()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="landing", Prefix=f"{PREFIX}dt={day}/").get("Contents", [])]
    return sorted({k.split("/")[4] for k in keys if k.endswith("/_manifest.json")})


# --- the tests ---------------------------------------------------------------------------------
def test_trigger_with_params_from_the_form(page: Any, airflow_up: AirflowUp) -> None:
    airflow_up.wait_for_dag(DAG_ID)
    dialog = _open_trigger_dialog(page, airflow_up)
    submit = page.get_by_test_id("trigger-dag-submit")

    # an unknown table is refused (the params' JSON schema, checked when the form submits) with a
    # message naming the param, and no run is created
    _set_tables(dialog, "no_such_table")
    submit.click()
    error = dialog.get_by_text(re.compile(r"Invalid input for param tables: 'no_such_table' is not one of")).first
    try:
        error.wait_for(timeout=15_000)
    except Exception:  # noqa: BLE001 - fail with what the dialog shows instead
        raise AssertionError(
            f"no error shown for an invalid table; the dialog says: {dialog.inner_text()[:1500]}") from None
    assert page.get_by_role("dialog").count() == 1, "the dialog closed: the invalid run was submitted"
    assert airflow_up.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=manual")["total_entries"] == 0

    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    _set_datetime(page, _field(dialog, "Window start").get_by_test_id("datetime-input"), start)
    _set_datetime(page, _field(dialog, "Window end").get_by_test_id("datetime-input"), start + timedelta(hours=1))
    _set_tables(dialog, TABLE)
    expect_enabled(submit)
    submit.click()

    page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/]+$"))
    run_id = page.url.rsplit("/runs/", 1)[1]
    run = airflow_up.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    assert run["conf"]["tables"] == [TABLE]
    assert run["conf"]["window_start"].startswith("2024-01-01T00:00")

    assert _wait_run_state_in_ui(page, page.url) == "success"
    landed = _landed(airflow_up, "2024-01-01", ["00"])
    assert set(landed) == {"00"}, "the triggered run published no manifest for 2024-01-01 hour 00"
    assert landed["00"]["interval"] == {"start": "2024-01-01T00:00:00+00:00", "end": "2024-01-01T01:00:00+00:00"}
    assert sum(rows for _, _, rows in landed["00"]["files"]) > 0


def expect_enabled(locator: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while locator.is_disabled():
        if time.monotonic() > deadline:
            raise AssertionError("the submit button stayed disabled")
        time.sleep(0.2)


def test_backfill_three_hours_from_the_ui_dialog(page: Any, airflow_up: AirflowUp) -> None:
    dialog = _open_trigger_dialog(page, airflow_up)
    dialog.get_by_text("Backfill", exact=True).click()
    dialog.get_by_text("Reprocess Behavior").wait_for()
    pickers = dialog.get_by_test_id("datetime-input")
    _set_datetime(page, pickers.nth(0), BACKFILL_FROM)
    _set_datetime(page, pickers.nth(1), BACKFILL_TO)
    dialog.locator("input[name=max_active_runs]").fill("3")
    # Airflow 3.3's dialog sends the run parameters only with this box ticked
    dialog.get_by_text("Override parameters on existing runs").click()
    _set_tables(dialog, TABLE)
    run_backfill = dialog.get_by_role("button", name="Run Backfill")
    expect_enabled(run_backfill)
    run_backfill.click()
    page.get_by_role("dialog").wait_for(state="detached")

    backfills = airflow_up.api("GET", f"/api/v2/backfills?dag_id={DAG_ID}")["backfills"]
    assert len(backfills) == 1, backfills
    bf = backfills[0]
    assert (bf["dag_run_conf"] or {}).get("tables") == [TABLE], bf
    runs = _wait_backfill(airflow_up, bf["id"])
    assert sorted(r["data_interval_start"] for r in runs) == [
        f"2024-01-01T{h}:00:00Z" for h in BACKFILL_HOURS], runs
    assert {r["state"] for r in runs} == {"success"}, runs

    # exactly the three hours of the range were published, each with its manifest
    assert _partitions(airflow_up, "2024-01-01") == ["hour=00", *[f"hour={h}" for h in BACKFILL_HOURS]]
    landed = _landed(airflow_up, "2024-01-01", BACKFILL_HOURS)
    assert sorted(landed) == BACKFILL_HOURS
    for hour, part in landed.items():
        assert part["interval"]["start"] == f"2024-01-01T{hour}:00:00+00:00"
        assert sorted(k for k, _, _ in part["files"]) == sorted(part["objects"]), "objects not in the manifest"
    _snapshots["ui"] = landed

    page.goto(f"{airflow_up.url}/dags/{DAG_ID}")
    page.get_by_test_id(re.compile(r"^grid-backfill__")).first.wait_for()
    page.wait_for_timeout(1500)
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "grid.png"))


@pytest.mark.parametrize("attempt", [1, 2])
def test_rest_backfill_reprocess_all_leaves_the_same_objects(airflow_up: AirflowUp, attempt: int) -> None:
    assert "ui" in _snapshots, "needs the UI backfill of the previous test"
    bf = airflow_up.api("POST", "/api/v2/backfills", {
        "dag_id": DAG_ID, "from_date": BACKFILL_FROM.isoformat(), "to_date": BACKFILL_TO.isoformat(),
        "reprocess_behavior": "completed", "max_active_runs": 3, "dag_run_conf": {"tables": [TABLE]},
    })
    runs = _wait_backfill(airflow_up, bf["id"])
    mine = [r for r in runs if r.get("backfill_id") == bf["id"]] or runs
    assert {r["state"] for r in mine} == {"success"}, mine
    assert _partitions(airflow_up, "2024-01-01") == ["hour=00", *[f"hour={h}" for h in BACKFILL_HOURS]]
    assert _landed(airflow_up, "2024-01-01", BACKFILL_HOURS) == _snapshots["ui"]


def test_landed_datasets_show_in_the_asset_graph(page: Any, airflow_up: AirflowUp) -> None:
    """The Assets view lists the landed datasets; the graph of one shows the DAG producing it.
    Saved as docs/img/asset_graph.png."""
    assets = airflow_up.api("GET", "/api/v2/assets?limit=100")["assets"]
    landed = {a["name"]: a for a in assets if a["uri"].startswith("s3://landing/raw/")}
    assert landed, f"no landing dataset is declared as an Asset (outlets); assets: {[a['uri'] for a in assets]}"
    # the mapped land task emits each table's event through an AssetAlias: the table landed by the
    # runs above exists as an Asset now; orderdetails' key-range publisher declares its Asset
    # statically, so its graph shows the producing DAG
    assert f"raw.classicmodels.{TABLE}" in landed, f"no Asset for the landed table {TABLE}: {sorted(landed)}"
    name = "raw.classicmodels.orderdetails"
    assert name in landed, f"{name} is not declared as an Asset: {sorted(landed)}"
    producers = {t["dag_id"] for t in landed[name]["producing_tasks"]}
    assert producers, f"{name} has no producing task"

    page.goto(f"{airflow_up.url}/assets")
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(re.compile(r"/assets/\d+"))
    graph = page.locator(".react-flow").first
    graph.wait_for()
    graph.get_by_text(sorted(producers)[0]).first.wait_for()
    page.wait_for_timeout(1500)
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "asset_graph.png"))
