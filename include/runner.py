"""Run DAGs of this project in-process (``dag.test()``), for the demo and the integration tests.

``dag.test()`` creates a real DagRun in the metadata DB and runs every task in this process,
with connections from ``AIRFLOW_CONN_*``. A data-interval timetable gives a manual run the
last complete interval before its logical date, so ``run_dag(..., interval_end=X)`` lands
the interval that ends at X.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from include.stack.base import REPO_ROOT

DAGS_DIR = REPO_ROOT / "dags"


@cache
def dagbag(folder: str = str(DAGS_DIR)) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag


def dag_ids(folder: Path = DAGS_DIR) -> list[str]:
    return sorted(dagbag(str(folder)).dags)


def run_dag(dag_id: str, *, interval_end: datetime | None = None, conf: dict[str, Any] | None = None,
            folder: Path = DAGS_DIR) -> Any:
    """Run one DagRun of ``dag_id`` to completion; return the DagRun (check ``.state``)."""
    dag = dagbag(str(folder)).get_dag(dag_id)
    if dag is None:
        raise KeyError(f"no DAG {dag_id!r} in {folder}")
    kwargs: dict[str, Any] = {"run_conf": conf or {}}
    if interval_end is not None:
        kwargs["logical_date"] = interval_end
    return dag.test(**kwargs)


def failed_tasks(dagrun: Any) -> list[str]:
    """task_id[map_index] of the run's failed task instances (for clear error messages)."""
    from airflow.utils.state import TaskInstanceState

    out = []
    for ti in dagrun.get_task_instances():
        if ti.state in (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED):
            out.append(f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id)
    return out
