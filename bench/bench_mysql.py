"""MySQL -> S3 benchmark: 1,000,000 rows x 10 columns, side by side on the same data and S3 server.

Subjects (each its own process, so each peak RSS is its own):
- ``limit``: ``mariadb --batch --quick`` reading the same query into /dev/null (the C client's raw read);
- ``airflow SqlToS3Operator``: Airflow's operator (amazon provider) writing one Parquet object;
- ``dlt sql_database pyarrow``: dlt's ``sql_database`` source, pyarrow backend, chunk 50k, filesystem
  destination writing Parquet to the same bucket (installed into ``bench/.venv-dlt`` with pip, as a
  user would: the first run needs the package registry);
- ``ours``: ``SqlTableToS3Operator`` (connectorx Arrow batches -> Parquet parts -> reconcile -> manifest);
- ``ours`` again at 5,000,000 rows, to show memory stays flat.

Whole-process wall time (interpreter start and imports included, for every Python subject), rows/s,
peak RSS. ``BENCH_MYSQL_ROWS`` / ``BENCH_MYSQL_BIG_ROWS`` change the sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from bench.common import REPO, Recorder, run_measured, time_rss_cmd

ROWS = int(os.environ.get("BENCH_MYSQL_ROWS", "1000000"))
BIG_ROWS = int(os.environ.get("BENCH_MYSQL_BIG_ROWS", "5000000"))
TABLE = "bench_orders"
START, END = datetime(2024, 1, 1), datetime(2024, 1, 2)
QUERY = f"SELECT * FROM {TABLE} WHERE updated_at >= '2024-01-01 00:00:00' AND updated_at < '2024-01-02 00:00:00'"
DLT_VENV = REPO / "bench" / ".venv-dlt"
DLT_REQS = ["dlt[parquet,s3]==1.31.0", "sqlalchemy==2.0.49", "pymysql==1.1.2"]

PRELUDE = r'''
import os, sys, time, json
sys.path[:0] = [os.path.join(os.environ["REPO"], "plugins"), os.environ["REPO"]]
'''

OURS = PRELUDE + r'''
from datetime import datetime, timezone
from s3lander.operators.sql_to_s3 import SqlTableToS3Operator
from s3lander.sql.tables import TableConfig
cfg = TableConfig(name="bench_orders", watermark="updated_at", primary_key=("id",), batch_rows=100_000)
op = SqlTableToS3Operator(task_id="bench", source="bench_ours", table=cfg.to_dict(), conn_id="mysql_source")
ctx = {"data_interval_start": datetime(2024, 1, 1, tzinfo=timezone.utc),
       "data_interval_end": datetime(2024, 1, 2, tzinfo=timezone.utc), "run_id": "bench", "params": {}}
t0 = time.perf_counter()
out = op.execute(ctx)
print("TASK_S", time.perf_counter() - t0)
print("RESULT", json.dumps(out))
from bench.common import report_peak
report_peak()
'''

AIRFLOW_PEER = PRELUDE + r'''
from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator
op = SqlToS3Operator(task_id="peer", query=os.environ["QUERY"], s3_bucket="landing",
                     s3_key="bench/airflow/orders.parquet", sql_conn_id="mysql_source",
                     aws_conn_id="aws_default", file_format="parquet", replace=True)
t0 = time.perf_counter()
op.execute({})
print("TASK_S", time.perf_counter() - t0)
from bench.common import report_peak
report_peak()
'''

DLT_PEER = r'''
import os, sys, resource
import dlt
from dlt.sources.sql_database import sql_table
c = {k: os.environ[k] for k in ("DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME")}
from urllib.parse import quote
url = (f"mysql+pymysql://{quote(c['DB_USER'], safe='')}:{quote(c['DB_PASSWORD'], safe='')}@{c['DB_HOST']}:"
       f"{c['DB_PORT']}/{c['DB_NAME']}")
table = sql_table(credentials=url, table="bench_orders", backend="pyarrow", chunk_size=50_000)
pipeline = dlt.pipeline(pipeline_name="bench_mysql", destination="filesystem", dataset_name="dlt",
                        pipelines_dir=os.environ["DLT_PIPELINES_DIR"])
import time
t0 = time.perf_counter()
info = pipeline.run(table, loader_file_format="parquet", write_disposition="replace")
print("TASK_S", time.perf_counter() - t0)
print(info)
self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kids_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"PEAK_RSS_MB={max(self_mb, kids_mb):.1f}", flush=True)
'''


def record(rec: Recorder, subject: str, m: object, size: str, rows: int) -> None:
    """Whole-process figures, plus ``task_s``: the transfer alone (operator.execute / pipeline.run),
    without interpreter start and imports, which an Airflow worker pays once, not per task."""
    rec.record_run(subject, m, size, units=rows, unit_metric="rows_per_s")
    for line in m.stdout.splitlines():
        if line.startswith("TASK_S "):
            rec.record(subject, "task_s", float(line.split()[1]), size)


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

        size = f"{ROWS:,} rows x 10 cols"
        seed(ROWS)
        # the limit: the C client's own read of the same query, to /dev/null
        client = ["sh", "-c", f'mariadb --no-defaults -h {i["host"]} -P {i["port"]} -u {i["user"]} '
                              f'--default-character-set=utf8mb4 --batch --quick {i["database"]} '
                              f'-e "{QUERY}" > /dev/null']
        m = run_measured(time_rss_cmd(client), env={"MYSQL_PWD": i["password"]})
        record(rec, "limit", m, size, ROWS)

        m = run_measured([sys.executable, "-c", OURS], env=env)
        result = json.loads(next(ln for ln in m.stdout.splitlines() if ln.startswith("RESULT"))[7:])
        assert result["rows"] == ROWS, result
        record(rec, "ours", m, size, ROWS)

        m = run_measured([sys.executable, "-c", AIRFLOW_PEER], env=env)
        record(rec, "airflow SqlToS3Operator", m, size, ROWS)

        try:
            if os.environ.get("BENCH_MYSQL_NO_DLT"):
                raise RuntimeError("skipped (BENCH_MYSQL_NO_DLT)")
            py = ensure_dlt()
            conn = json.loads(stack.environment()["AIRFLOW_CONN_AWS_DEFAULT"])
            denv = {"DB_USER": i["user"], "DB_PASSWORD": i["password"], "DB_HOST": i["host"],
                    "DB_PORT": str(i["port"]), "DB_NAME": i["database"], "DLT_PIPELINES_DIR": str(tmp / "dlt"),
                    "DESTINATION__FILESYSTEM__BUCKET_URL": "s3://landing/bench/dlt",
                    "DESTINATION__FILESYSTEM__CREDENTIALS__AWS_ACCESS_KEY_ID": conn["login"],
                    "DESTINATION__FILESYSTEM__CREDENTIALS__AWS_SECRET_ACCESS_KEY": conn["password"],
                    "DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL": conn["extra"]["endpoint_url"],
                    "DESTINATION__FILESYSTEM__CREDENTIALS__REGION_NAME": "us-east-1",
                    "RUNTIME__LOG_LEVEL": "WARNING", "PYTHONPATH": ""}
            m = run_measured([str(py), "-c", DLT_PEER], env=denv)
            record(rec, "dlt sql_database pyarrow", m, size, ROWS)
        except Exception as e:  # noqa: BLE001 - report the peer's failure, keep our figures
            print(f"dlt peer failed: {type(e).__name__}: {str(e)[-1500:]}", file=sys.stderr)

        if BIG_ROWS:
            seed(BIG_ROWS)
            big = f"{BIG_ROWS:,} rows x 10 cols"
            m = run_measured(time_rss_cmd(client), env={"MYSQL_PWD": i["password"]})
            record(rec, "limit", m, big, BIG_ROWS)
            m = run_measured([sys.executable, "-c", OURS], env=env)
            result = json.loads(next(ln for ln in m.stdout.splitlines() if ln.startswith("RESULT"))[7:])
            assert result["rows"] == BIG_ROWS, result
            record(rec, "ours", m, big, BIG_ROWS)
        rec.table()
    finally:
        stack.down()


if __name__ == "__main__":
    main()
