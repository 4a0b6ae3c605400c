"""DAG integrity: every DAG file imports cleanly, without I/O, and follows the project's rules."""

from __future__ import annotations

import ast
import socket
from datetime import timedelta
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def bag(monkeypatch_module: pytest.MonkeyPatch):
    """Parse the dags folder with every network connection refused: parse-time I/O fails the test."""

    def no_network(*args, **kwargs):
        raise AssertionError(f"DAG parsing opened a network connection: {args[1:] if len(args) > 1 else args}")

    monkeypatch_module.setattr(socket.socket, "connect", no_network)
    monkeypatch_module.setattr(socket, "create_connection", no_network)
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_dag_files_exist():
    assert DAG_FILES, f"no DAG files in {DAGS}"


def test_no_import_errors(bag):
    assert not bag.import_errors, f"import errors: {bag.import_errors}"
    assert bag.dags, "no DAGs were found"


def test_every_file_defines_a_dag(bag):
    files = {Path(d.fileloc).name for d in bag.dags.values()}
    missing = [p.name for p in DAG_FILES if p.name not in files]
    assert not missing, f"files without a DAG: {missing}"


def _dags(bag):
    return sorted(bag.dags.values(), key=lambda d: d.dag_id)


def test_tags_owner_retries_docs(bag):
    problems = []
    for dag in _dags(bag):
        if not dag.tags:
            problems.append(f"{dag.dag_id}: no tags")
        if not dag.doc_md or "backfill" not in dag.doc_md.lower() or "trigger" not in dag.doc_md.lower():
            problems.append(f"{dag.dag_id}: doc_md must explain how to trigger and backfill it")
        if not dag.max_active_runs or dag.max_active_runs > 64:
            problems.append(f"{dag.dag_id}: max_active_runs must be set")
        for t in dag.tasks:
            if t.owner in (None, "", "airflow"):
                problems.append(f"{dag.dag_id}.{t.task_id}: set a real owner")
            if (t.retries or 0) < 2:
                problems.append(f"{dag.dag_id}.{t.task_id}: retries {t.retries} < 2")
            if not t.retry_delay or t.retry_delay < timedelta(seconds=1):
                problems.append(f"{dag.dag_id}.{t.task_id}: no retry_delay")
    assert not problems, "\n".join(problems)


def test_catchup_is_explicit():
    missing = []
    for path in DAG_FILES:
        tree = ast.parse(path.read_text())
        kws = {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords}
        if "catchup" not in kws:
            missing.append(path.name)
    assert not missing, f"set catchup explicitly in: {missing}"


def test_windowed_dags_use_data_interval_timetables(bag):
    """Cron strings give zero-width intervals in Airflow 3; a DAG that reads a window needs
    CronDataIntervalTimetable or DeltaDataIntervalTimetable (event-driven DAGs are exempt)."""
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

    wrong = []
    for dag in _dags(bag):
        if "event-driven" in dag.tags:
            continue
        tt = dag.timetable
        core = type(tt).__name__
        if core not in {CronDataIntervalTimetable.__name__, DeltaDataIntervalTimetable.__name__}:
            wrong.append(f"{dag.dag_id}: {core}")
    assert not wrong, f"use a data-interval timetable: {wrong}"


def test_dag_files_import_nothing_heavy_at_top_level():
    """DAG files declare; the heavy imports (pyarrow, boto3, paramiko, ...) belong in tasks."""
    heavy = {"pyarrow", "boto3", "botocore", "paramiko", "asyncssh", "MySQLdb", "connectorx", "requests", "pandas"}
    found = []
    for path in DAG_FILES:
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in heavy]
    assert not found, f"heavy top-level imports: {found}"
