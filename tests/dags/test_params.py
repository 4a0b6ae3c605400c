"""Trigger-form contract of every DAG: typed, described Params that refuse bad input, and a
well-defined window for a manual run.

The UI renders each DAG's Params (JSON schema) as the trigger form and Airflow validates a run's
conf against them (``ParamsDict.validate``) before any run exists: these tests use the same
validation, so what they refuse is what the form and ``POST /dagRuns`` refuse.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
#: a moment off any schedule boundary, for manual runs
RUN_AFTER = datetime(2024, 3, 5, 10, 17, 23, tzinfo=timezone.utc)


def _bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, f"import errors: {bag.import_errors}"
    return bag


_BAG: Any = None


def _dag(dag_id: str) -> Any:
    global _BAG
    if _BAG is None:
        _BAG = _bag()
    return _BAG.dags[dag_id]


def _dag_ids() -> list[str]:
    global _BAG
    if _BAG is None:
        _BAG = _bag()
    return sorted(_BAG.dags)


DAG_IDS = _dag_ids()


def test_there_are_dags() -> None:
    assert DAG_IDS, f"no DAGs in {DAGS}"


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    return {t} if isinstance(t, str) else set(t or [])


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_param_is_typed_and_described(dag_id: str) -> None:
    params = _dag(dag_id).params
    problems = []
    for name in params:
        param = params.get_param(name)
        schema = param.schema
        if not (_types(schema) or "enum" in schema or "anyOf" in schema or "oneOf" in schema):
            problems.append(f"{name}: no JSON-schema type (Param(..., type=...))")
        if not str(param.description or schema.get("description") or "").strip():
            problems.append(f"{name}: no description (shown under the field in the trigger form)")
    assert not problems, f"{dag_id}: " + "; ".join(problems)
    assert {"window_start", "window_end"} <= set(params), f"{dag_id}: params lack window_params()"


def _wrong_type_value(schema: dict[str, Any]) -> Any:
    """A value of a JSON type the schema does not allow."""
    types = _types(schema)
    if "object" not in types:
        return {"not": "allowed"}
    if "array" not in types:
        return ["not", "allowed"]
    return 3.5 if not types & {"number"} else None


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_invalid_params_are_refused(dag_id: str) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = _dag(dag_id).params
    params.validate()  # the defaults are valid: a run without conf is accepted

    bad: dict[str, Any] = {"window_start": "yesterday"}  # not an ISO-8601 date-time
    for name in params:
        schema = params.get_param(name).schema
        if "enum" in schema:
            bad[f"{name}"] = "__not_an_option__"
        elif "items" in schema and "enum" in schema["items"]:
            bad[name] = ["__not_an_option__"]
    for name in params:
        bad.setdefault(name, _wrong_type_value(params.get_param(name).schema))

    accepted = []
    for name, value in bad.items():
        try:
            _with(params, {name: value}).validate()
        except ParamValidationError as e:
            assert name in str(e), f"the error does not name the param {name!r}: {e}"
        else:
            accepted.append(f"{name}={value!r}")
    assert not accepted, f"{dag_id} accepted invalid params: {accepted}"


def _with(params: Any, conf: dict[str, Any]) -> Any:
    """The DAG's params with a run's conf applied, as Airflow does on trigger (validates each value)."""
    import copy

    merged = copy.deepcopy(params)
    for k, v in conf.items():
        merged[k] = v
    return merged


def _context(dag: Any, params: dict[str, Any], *, interval: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    return {"dag": dag, "dag_run": SimpleNamespace(run_after=RUN_AFTER), "params": params,
            "data_interval_start": interval[0] if interval else None,
            "data_interval_end": interval[1] if interval else None}


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_a_manual_run_gets_a_defined_window(dag_id: str) -> None:
    """Triggered without a logical date (REST API, or the form's date cleared) or with one, a run
    lands the last complete interval before it: never an empty, zero-width or future window."""
    from airflow.serialization.encoders import coerce_to_core_timetable

    from s3lander.landing.intervals import interval_from_context

    dag = _dag(dag_id)
    defaults = dict(dag.params.validate())
    window = interval_from_context(_context(dag, defaults))  # no logical date: no data interval
    assert window.start < window.end <= RUN_AFTER, f"{dag_id}: manual window {window}"

    import pendulum

    inferred = coerce_to_core_timetable(dag.timetable).infer_manual_data_interval(
        run_after=pendulum.instance(RUN_AFTER))  # what Airflow gives a run with a logical date
    assert inferred.start < inferred.end, f"{dag_id}: zero-width data interval {inferred}"
    assert interval_from_context(_context(dag, defaults, interval=(inferred.start, inferred.end))) == window

    # the window override of the form wins over the data interval
    start, end = datetime(2024, 1, 1, 5, tzinfo=timezone.utc), datetime(2024, 1, 1, 6, tzinfo=timezone.utc)
    override = {**defaults, "window_start": start.isoformat(), "window_end": end.isoformat()}
    _with(dag.params, override).validate()
    got = interval_from_context(_context(dag, override, interval=(inferred.start, inferred.end)))
    assert (got.start, got.end) == (start, end)


def test_an_empty_window_override_is_refused() -> None:
    from s3lander.landing.intervals import IntervalError, interval_from_context

    t = "2024-01-01T05:00:00+00:00"
    with pytest.raises(IntervalError, match="empty or reversed"):
        interval_from_context({"params": {"window_start": t, "window_end": t}})
    with pytest.raises(IntervalError, match="time zone"):
        interval_from_context({"params": {"window_start": "2024-01-01T05:00:00", "window_end": t}})


def test_a_cron_trigger_timetable_gets_no_silent_empty_window() -> None:
    """A cron string (zero-width CronTriggerTimetable intervals) fails loudly instead of landing nothing."""
    from airflow.sdk import CronTriggerTimetable

    from s3lander.landing.intervals import IntervalError, interval_from_context

    dag = SimpleNamespace(timetable=CronTriggerTimetable("0 * * * *", timezone="UTC"))
    with pytest.raises(IntervalError, match="data-interval timetable"):
        interval_from_context(_context(dag, {}))


def _outlets(task: Any) -> list[Any]:
    outlets = getattr(task, "outlets", None) or (getattr(task, "partial_kwargs", None) or {}).get("outlets")
    return list(outlets or [])


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_landed_datasets_are_declared_as_assets(dag_id: str) -> None:
    """A DAG that lands data names its datasets in ``outlets`` (``s3lander.assets.dataset_asset``)
    on the task that publishes them, so they show in the UI's asset views and downstream DAGs can
    be scheduled on them."""
    from airflow.sdk import AssetAlias

    from s3lander.assets import dataset_uri

    dag = _dag(dag_id)
    landing = dataset_uri("x", "y").rsplit("/x/", 1)[0] + "/"
    uris = sorted({getattr(o, "uri", "") for t in dag.tasks for o in _outlets(t)})
    # a mapped task publishing one dataset per instance declares a landing alias and emits through it
    aliased = [t for t in dag.tasks for o in _outlets(t) if isinstance(o, AssetAlias)
               and o.name == "landing:" + str((getattr(t, "partial_kwargs", None) or {}).get("asset_alias")
                                              or getattr(t, "asset_alias", None))]
    assert aliased or any(u.startswith(landing) for u in uris), (
        f"{dag_id}: no task declares a landed dataset as an Asset (outlets=[dataset_asset(source, dataset)] "
        f"on the publishing task); outlets found: {uris}")
    assert timedelta(0) < _interval_width(dag), f"{dag_id}: zero-width schedule"


def _interval_width(dag: Any) -> timedelta:
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable

    di = coerce_to_core_timetable(dag.timetable).infer_manual_data_interval(run_after=pendulum.instance(RUN_AFTER))
    return di.end - di.start
