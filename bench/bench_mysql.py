"""MySQL -> S3 benchmark: 1,000,000 rows x 10 columns, side by side on the same data and S3 server.

Subjects (each its own process, so each peak RSS is its own):
- ``limit``: ``mariadb --batch --quick`` reading the same query into /dev/null (the C client's raw read);
- ``airflow SqlToS3Operator``: Airflow's operator (amazon provider) writing one Parquet object;
- ``dlt sql_database pyarrow``: dlt's ``sql_database`` source, pyarrow backend, chunk 50k, filesystem
  destination writing Parquet to the same bucket (installed into ``bench/.venv-dlt`` with pip, as a
  user would: the first run needs the package registry);
- ``ours``: ``SqlTableToS3Operator`` (connectorx Arrow batches -> Parquet parts -> reconcile -> manifest);
- ``ours`` again at 5,000,000 rows, to show memory stays flat.

Every subject runs ``BENCH_MYSQL_REPEAT`` times at 1M rows (default 5: on the shared 2-core machine
single rounds differed by up to 1.6x, and the 1M ratios are the ones the targets are about) and
``BENCH_MYSQL_BIG_REPEAT`` times at 5M (default 3), the subjects interleaved round by round so that
load from other processes on the machine hits them alike; the figures are the medians, and each
JSON line also carries the individual runs (``runs``) to show the noise.

Metrics: ``wall_s`` is the whole process (interpreter start and imports included, for every
subject); ``task_process_s``, for the Airflow subjects (ours and SqlToS3Operator), is the task
process alone: each runs as an Airflow 3 worker runs a task on Linux, in a process forked from
one that has imported the Task SDK's supervisor (``bench.common.forked_task``), from fork to
exit, so the Airflow import is paid once per worker rather than per task, as in production;
``task_s`` is the transfer alone (``execute()`` / ``pipeline.run()``). The speed targets compare
each subject as it runs in production (``report_targets``): the Airflow subjects on
``task_process_s``, dlt on ``wall_s`` (the script its users run, dlt's import included); the
whole-process ratios are printed beside them. ``cpu_s`` is the process tree's CPU time (user +
sys; for ``limit`` it includes the small Python shim that samples the client's RSS), steadier
than wall time on a shared machine; rows/s from ``wall_s``; peak RSS of the process (the task
process for the Airflow subjects: its pages shared with the worker count, as they do for a real
task). The task processes end as Airflow's do (``supervisor._fork_main``: atexit handlers, then
``os._exit``); dlt runs as the script a user would run, and pays its teardown.
At the big size SqlToS3Operator runs once (``BENCH_MYSQL_BIG_AIRFLOW=0`` skips it: ~5x its 1M
figures). ``BENCH_MYSQL_ROWS`` / ``BENCH_MYSQL_BIG_ROWS`` change the sizes;
``BENCH_MYSQL_ONLY=limit,ours`` runs only the named subjects (``limit``, ``ours``, ``dlt``,
``airflow``), for quick iterations.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, Recorder, forked_task, printed_seconds, run_measured, time_rss_cmd

ROWS = int(os.environ.get("BENCH_MYSQL_ROWS", "1000000"))
BIG_ROWS = int(os.environ.get("BENCH_MYSQL_BIG_ROWS", "5000000"))
REPEAT = max(1, int(os.environ.get("BENCH_MYSQL_REPEAT", "5")))
BIG_REPEAT = max(1, int(os.environ.get("BENCH_MYSQL_BIG_REPEAT", "3")))
ONLY = {name.strip() for name in os.environ.get("BENCH_MYSQL_ONLY", "").split(",") if name.strip()}
TABLE = "bench_orders"
START, END = datetime(2024, 1, 1), datetime(2024, 1, 2)
QUERY = f"SELECT * FROM {TABLE} WHERE updated_at >= '2024-01-01 00:00:00' AND updated_at < '2024-01-02 00:00:00'"
DLT_VENV = REPO / "bench" / ".venv-dlt"
# dlt reads through SQLAlchemy with the C driver (mysqlclient, like our DB-API side): with the
# pure-Python PyMySQL the same run took 150 s, which would measure the driver, not dlt
DLT_REQS = ["dlt[parquet,s3]==1.31.0", "sqlalchemy==2.0.49", "mysqlclient==2.3.1"]

PRELUDE = r'''
import os, sys, time, json
sys.path[:0] = [os.path.join(os.environ["REPO"], "plugins"), os.environ["REPO"]]
'''

OURS = PRELUDE + r'''
from datetime import datetime, timezone
from s3lander.operators.sql_to_s3 import SqlTableToS3Operator
from s3lander.sql.tables import TableConfig
cfg = TableConfig(name="bench_orders", watermark="updated_at", primary_key=("id",))  # default batch_rows
op = SqlTableToS3Operator(task_id="bench", source="bench_ours", table=cfg.to_dict(), conn_id="mysql_source")
ctx = {"data_interval_start": datetime(2024, 1, 1, tzinfo=timezone.utc),
       "data_interval_end": datetime(2024, 1, 2, tzinfo=timezone.utc), "run_id": "bench", "params": {}}
t0 = time.perf_counter()
out = op.execute(ctx)
print("TASK_S", time.perf_counter() - t0)
print("RESULT", json.dumps(out))
from bench.common import exit_like_a_task_process, report_peak
report_peak()
exit_like_a_task_process()
'''

AIRFLOW_PEER = PRELUDE + r'''
from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator
op = SqlToS3Operator(task_id="peer", query=os.environ["QUERY"], s3_bucket="landing",
                     s3_key="bench/airflow/orders.parquet", sql_conn_id="mysql_source",
                     aws_conn_id="aws_default", file_format="parquet", replace=True)
t0 = time.perf_counter()
op.execute({})
print("TASK_S", time.perf_counter() - t0)
from bench.common import exit_like_a_task_process, report_peak
report_peak()
exit_like_a_task_process()
'''

DLT_PEER = r'''
import os, sys, resource
import dlt
from dlt.sources.sql_database import sql_table
c = {k: os.environ[k] for k in ("DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME")}
from urllib.parse import quote
url = (f"mysql+mysqldb://{quote(c['DB_USER'], safe='')}:{quote(c['DB_PASSWORD'], safe='')}@{c['DB_HOST']}:"
       f"{c['DB_PORT']}/{c['DB_NAME']}?charset=utf8mb4")
table = sql_table(credentials=url, table="bench_orders", backend="pyarrow", chunk_size=50_000)
pipeline = dlt.pipeline(pipeline_name="bench_mysql", destination="filesystem", dataset_name="dlt",
                        pipelines_dir=os.environ["DLT_PIPELINES_DIR"])
import time
t0 = time.perf_counter()
info = pipeline.run(table, loader_file_format="parquet", write_disposition="replace")
print("TASK_S", time.perf_counter() - t0)
print(info)
# own VmHWM: ru_maxrss would carry the benchmark driver's peak across exec
self_mb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
kids_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"PEAK_RSS_MB={max(self_mb, kids_mb):.1f}", flush=True)
'''


def children_cpu_s() -> float:
    """CPU time (user + sys) of every child process waited for so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def record(rec: Recorder, subject: str, runs: list[Any], size: str, rows: int, cpu: list[float]) -> None:
    """Medians of the runs of one subject: whole-process ``wall_s`` (the ratios use it), ``task_s``
    (the transfer alone, without interpreter start and imports), ``cpu_s``, peak RSS, rows/s;
    ``runs`` and the spread (max/min - 1) go along in the JSON lines."""
    walls = [m.wall_s for m in runs]
    peaks = [m.peak_rss_mb for m in runs]
    spread = {"runs": [round(w, 3) for w in walls], "spread": round(max(walls) / min(walls) - 1, 3)}
    wall = statistics.median(walls)
    rec.record(subject, "wall_s", wall, size, **spread)
    for label, metric in (("TASK_PROCESS_S", "task_process_s"), ("TASK_S", "task_s")):
        values = [v for m in runs if (v := printed_seconds(m, label)) is not None]
        if values:
            rec.record(subject, metric, statistics.median(values), size, runs=[round(v, 3) for v in values])
    rec.record(subject, "cpu_s", statistics.median(cpu), size, runs=[round(c, 3) for c in cpu])
    rec.record(subject, "peak_rss_mb", statistics.median(peaks), size, runs=peaks)
    rec.record(subject, "rows_per_s", rows / wall, size)


def report_targets(rec: Recorder, size: str) -> None:
    """The issue's targets at one size, as ratios (printed, and recorded as subject ``targets``).

    Speed: ours against each peer as each runs in production. An Airflow task runs in a process
    forked from the worker's supervisor (``forked_task``), which has imported Airflow already: the
    Airflow subjects are compared on ``task_process_s`` (fork to exit); dlt runs as the script its
    users run, on ``wall_s``. The whole-process ratios (interpreter start and the Airflow import
    charged to every run) are printed beside them. The read: ours ``task_s`` (``execute()``)
    against the client's whole process."""
    fig = rec.figures(size)
    lines = [f"targets ({size}):"]
    ours_task, ours_whole = fig.get(("ours", "task_process_s")), fig.get(("ours", "wall_s"))
    for peer, metric in (("dlt sql_database pyarrow", "wall_s"), ("airflow SqlToS3Operator", "task_process_s")):
        theirs, theirs_whole = fig.get((peer, metric)), fig.get((peer, "wall_s"))
        if ours_task and theirs and ours_whole and theirs_whole:
            rec.record("targets", f"faster_than_{peer.split()[0]}_x", theirs / ours_task, size,
                       whole_process_x=round(theirs_whole / ours_whole, 3))
            lines.append(f"  ours {theirs / ours_task:.2f}x faster than {peer} (target >= 3): ours' task process "
                         f"{ours_task:.2f} s vs its {metric} {theirs:.2f} s; whole process both: "
                         f"{theirs_whole / ours_whole:.2f}x")
    limit, task = fig.get(("limit", "wall_s")), fig.get(("ours", "task_s"))
    if limit and task:
        rec.record("targets", "of_client_read_x", task / limit, size)
        lines.append(f"  ours execute() {task:.2f} s = {task / limit:.2f}x the client's read {limit:.2f} s "
                     "(target <= 1.5)")
    if ("ours", "peak_rss_mb") in fig:
        lines.append(f"  ours peak RSS {fig[('ours', 'peak_rss_mb')]:.0f} MB (target < 300)")
    print("\n".join(lines), flush=True)


def ensure_dlt() -> Path:
    """dlt in its own venv, installed with pip like a user would (kept between runs, gitignored)."""
    py = DLT_VENV / "bin" / "python"
    stamp = DLT_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(DLT_REQS):
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *DLT_REQS], check=True)
        stamp.write_text(" ".join(DLT_REQS))
    return py


def main() -> None:
    from include.stack.cli import Stack

    rec = Recorder("mysql")
    tmp = Path(tempfile.mkdtemp(prefix="bench-mysql-"))
    stack = Stack(tmp / "stack")
    try:
        stack.up(["mariadb", "s3"])
        env = {**stack.environment(), "REPO": str(REPO), "QUERY": QUERY, "PYTHONPATH": f"{REPO}/plugins:{REPO}",
               "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
        db, dbstate = stack.service("mariadb")
        i = dbstate.info
        from include.sample_data.classicmodels import seed_bench_table

        def seed(rows: int) -> None:
            db.admin_sql(f"DROP TABLE IF EXISTS {TABLE}", database=i["database"])
            seed_bench_table(db.admin_sql, rows=rows, start=START, end=END, table=TABLE)
            db.admin_sql(f"ANALYZE TABLE {TABLE}; SELECT COUNT(*) FROM {TABLE}", database=i["database"])

        # the limit: the C client's own read of the same query, to /dev/null
        client = time_rss_cmd(["sh", "-c", f'mariadb --no-defaults -h {i["host"]} -P {i["port"]} -u {i["user"]} '
                                           f'--default-character-set=utf8mb4 --batch --quick {i["database"]} '
                                           f'-e "{QUERY}" > /dev/null'])
        dlt_py: Path | None = None
        try:
            if os.environ.get("BENCH_MYSQL_NO_DLT") or (ONLY and "dlt" not in ONLY):
                raise RuntimeError("skipped (BENCH_MYSQL_NO_DLT / BENCH_MYSQL_ONLY)")
            dlt_py = ensure_dlt()
        except Exception as e:  # noqa: BLE001 - report the peer's failure, keep our figures
            print(f"dlt peer unavailable: {type(e).__name__}: {str(e)[-1500:]}", file=sys.stderr)
        conn = json.loads(stack.environment()["AIRFLOW_CONN_AWS_DEFAULT"])
        denv = {"DB_USER": i["user"], "DB_PASSWORD": i["password"], "DB_HOST": i["host"],
                "DB_PORT": str(i["port"]), "DB_NAME": i["database"], "DLT_PIPELINES_DIR": str(tmp / "dlt"),
                "DESTINATION__FILESYSTEM__BUCKET_URL": "s3://landing/bench/dlt",
                "DESTINATION__FILESYSTEM__CREDENTIALS__AWS_ACCESS_KEY_ID": conn["login"],
                "DESTINATION__FILESYSTEM__CREDENTIALS__AWS_SECRET_ACCESS_KEY": conn["password"],
                "DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL": conn["extra"]["endpoint_url"],
                "DESTINATION__FILESYSTEM__CREDENTIALS__REGION_NAME": "us-east-1",
                "RUNTIME__LOG_LEVEL": "WARNING", "PYTHONPATH": ""}

        def ours_ok(rows: int) -> Any:
            def check(m: Any) -> None:
                result = json.loads(next(ln for ln in m.stdout.splitlines() if ln.startswith("RESULT"))[7:])
                assert result["rows"] == rows, result
            return check

        for rows in [ROWS, BIG_ROWS] if BIG_ROWS else [ROWS]:
            seed(rows)
            size = f"{rows:,} rows x 10 cols"
            repeat = REPEAT if rows == ROWS else BIG_REPEAT
            subjects: list[tuple[str, list[str], dict[str, str] | None, int, Any]] = [
                ("limit", client, {"MYSQL_PWD": i["password"]}, repeat, None),
                ("ours", [sys.executable, "-c", forked_task(OURS)], env, repeat, ours_ok(rows)),
            ]
            if dlt_py is not None:
                subjects.append(("dlt sql_database pyarrow", [str(dlt_py), "-c", DLT_PEER], denv, repeat, None))
            if rows == ROWS or os.environ.get("BENCH_MYSQL_BIG_AIRFLOW", "1") != "0":
                subjects.append(("airflow SqlToS3Operator", [sys.executable, "-c", forked_task(AIRFLOW_PEER)], env,
                                 repeat if rows == ROWS else 1, None))
            if ONLY:
                subjects = [s for s in subjects if s[0].split()[0] in ONLY]
            runs: dict[str, list[Any]] = {name: [] for name, *_ in subjects}
            cpu: dict[str, list[float]] = {name: [] for name, *_ in subjects}
            for round_ in range(repeat):  # interleaved: machine load hits every subject alike
                for name, argv, senv, times, check in subjects:
                    if round_ >= times:
                        continue
                    cpu0 = children_cpu_s()
                    try:
                        m = run_measured(argv, env=senv)
                    except Exception as e:  # noqa: BLE001 - report a peer's failure, keep the others
                        if name == "ours":
                            raise
                        print(f"{name} failed: {type(e).__name__}: {str(e)[-1500:]}", file=sys.stderr)
                        continue
                    cpu[name].append(children_cpu_s() - cpu0)
                    if check:
                        check(m)
                    runs[name].append(m)
            for name, measured in runs.items():
                if measured:
                    record(rec, name, measured, size, rows, cpu[name])
            report_targets(rec, size)
        rec.table()
    finally:
        stack.down()


if __name__ == "__main__":
    main()
