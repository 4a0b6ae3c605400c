"""Foundation benchmark: DAG parse time, and the landing contract writing ~1 GB of Parquet to S3.

Subjects, same S3 server, same bytes:
- ``limit``: boto3 ``upload_file`` (its managed multipart transfer, 10 threads) of the Parquet bytes
  from local disk: the object store's ingest rate with nothing to encode.
- ``ours``: ``IntervalPublisher.part_writer`` encoding the same record batches to Parquet parts of
  256 MB and streaming them up (multipart, uploads overlapped with encoding), then publishing.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, Recorder, run_measured

N_BATCHES = int(os.environ.get("BENCH_LANDING_BATCHES", "16"))  # 16 x 64 MB = ~1 GB


SUBJECT = r'''
import os, sys, time
sys.path[:0] = [{plugins!r}, {repo!r}]
import pyarrow as pa
from bench.common import report_peak
mode, n_batches, endpoint, ak, sk, out = sys.argv[1:7]
n = 1_000_000
rng = os.urandom
# 8 columns of 8-byte values: incompressible, so bytes written ~ bytes uploaded
def column():
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), n, [None, pa.py_buffer(rng(8 * n))])
batch = pa.record_batch({{f"c{{i}}": column() for i in range(8)}})
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1",
                  config=Config(max_pool_connections=32, s3={{"addressing_style": "path"}}))
t0 = time.perf_counter()
if mode == "prepare":
    import pyarrow.parquet as pq
    with pq.ParquetWriter(out, batch.schema, compression="none") as w:
        for _ in range(int(n_batches)):
            w.write_batch(batch)
elif mode == "limit":
    from boto3.s3.transfer import TransferConfig
    s3.upload_file(out, "landing", "bench/limit/blob.parquet", Config=TransferConfig(max_concurrency=10))
    print("BYTES", os.path.getsize(out))
else:
    from datetime import datetime, timezone
    from s3lander.landing.formats import get_format
    from s3lander.landing.intervals import Interval
    from s3lander.landing.layout import DatasetLocation
    from s3lander.landing.publisher import IntervalPublisher
    iv = Interval(datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 1, 1, tzinfo=timezone.utc))
    pub = IntervalPublisher(client=s3, location=DatasetLocation("landing", "raw", "bench", "landing"), interval=iv,
                            run_id="bench")
    w = pub.part_writer(get_format("parquet", compression="none"), max_bytes=256 * 1024 * 1024, max_rows=10**9)
    files = w.write_all(batch for _ in range(int(n_batches)))
    m = pub.publish(files, fmt="parquet")
    print("BYTES", m.bytes)
print("SECONDS", time.perf_counter() - t0)
report_peak()
'''


def _figure(out: str, name: str) -> float:
    return next(float(line.split()[1]) for line in out.splitlines() if line.startswith(name + " "))


def main() -> None:
    from include.stack.cli import Stack

    rec = Recorder("landing")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}

    # 1. DAG parse time (DagBag of dags/), as the dag-processor does it
    parse = run_measured([sys.executable, "-c", (
        "import time,sys;t=time.perf_counter();from airflow.dag_processing.dagbag import DagBag;"
        f"b=DagBag({str(REPO / 'dags')!r});assert not b.import_errors, b.import_errors;"
        "print('SECONDS', time.perf_counter()-t);print('DAGS', len(b.dags))")], env=env)
    ndags = int(_figure(parse.stdout, "DAGS"))
    rec.record("ours", "dagbag_parse_s", _figure(parse.stdout, "SECONDS"), f"{ndags} DAGs")
    rec.record("ours", "peak_rss_mb", parse.peak_rss_mb, f"{ndags} DAGs")

    # 2. landing throughput, ours next to a plain boto3 upload of the same bytes
    with tempfile.TemporaryDirectory(prefix="bench-landing-") as tmp:
        stack = Stack(Path(tmp) / "stack")
        try:
            stack.up(["s3"])
            _, st = stack.service("s3")
            i = st.info
            script = Path(tmp) / "subject.py"
            script.write_text(SUBJECT.format(plugins=str(REPO / "plugins"), repo=str(REPO)))
            blob = str(Path(tmp) / "blob.parquet")
            args = [str(N_BATCHES), i["endpoint_url"], i["access_key"], i["secret_key"], blob]
            run_measured([sys.executable, str(script), "prepare", *args], env=env)
            size = f"{os.path.getsize(blob) / 1e9:.2f} GB parquet"
            for subject, mode in (("limit", "limit"), ("ours", "ours")):
                m = run_measured([sys.executable, str(script), mode, *args], env=env)
                nbytes = _figure(m.stdout, "BYTES")
                # the subject's own timer excludes interpreter start and data generation
                secs = _figure(m.stdout, "SECONDS")
                rec.record(subject, "wall_s", secs, size)
                rec.record(subject, "mb_per_s", nbytes / 1e6 / secs, size)
                rec.record(subject, "peak_rss_mb", m.peak_rss_mb, size)
        finally:
            stack.down()
    rec.table()


if __name__ == "__main__":
    main()
