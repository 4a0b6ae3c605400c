"""SFTP -> S3: ours vs OpenSSH sftp, plain boto3, Airflow's SFTPToS3Operator (both modes), on loopback.

Shapes: one 1 GiB random file, and 500 files of 200 KiB (plus ours alone on a 2 GiB file for
peak RSS). The pipeline limit is the slower of "OpenSSH sftp get to /dev/null" and "boto3
upload of the same bytes from local disk" (reading and writing overlap at best). Also
measured, which is how the SSH library, the transport and the read path were chosen: ours with
the in-process asyncssh transport, and the read path alone (with its SHA-256) by a bulk session
over ``ssh`` (ours), by asyncssh's SFTP client over ``ssh`` and over asyncssh's own transport,
and with paramiko (prefetch + TCP_NODELAY, hashing too). Every subject runs as its own process on the same
stack (sshd + SeaweedFS) in the same invocation. The machine is shared: figures are noisy.

Ours and the SFTPToS3Operator run as an Airflow 3 worker runs a task on Linux: in a process forked
from one that has imported the Task SDK's supervisor (``bench.common.forked_task``), so the
Airflow import is paid once per worker, not per task. ``task_process_s`` is that process from
fork to exit, ``task_s`` the ``execute()`` calls alone, ``wall_s`` the whole process (interpreter
start and the Airflow import included). The targets (``report_targets``) compare the task
process with the limit's commands as their users run them, and with the peer's task process; the
whole-process ratios are printed beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, Measured, Recorder, forked_task, printed_seconds, run_measured, time_rss_cmd

GIB = 1 << 30
SMALL_N, SMALL_SIZE = 500, 200 * 1024
PY = sys.executable
#: SFTPToS3Operator runs are stopped here (streaming mode reads 1 GiB at a few MB/s, and every mode opens
#: one SSH connection per file): the figure of a stopped run is a lower bound
PEER_TIMEOUT = float(os.environ.get("SFTP_BENCH_PEER_TIMEOUT", "60"))
#: runs per fast subject (OpenSSH, boto3, read paths, ours), interleaved: the median wall time is recorded
REPEAT = int(os.environ.get("SFTP_BENCH_REPEAT", "3"))

OURS = """
import sys, json, time
from datetime import datetime, timedelta, timezone
from s3lander.operators.sftp_to_s3 import SftpToS3Operator
from bench.common import exit_like_a_task_process, report_peak
inbox, dataset = sys.argv[1], sys.argv[2]
end = datetime(2030, 1, 1, tzinfo=timezone.utc)
op = SftpToS3Operator(task_id="bench", source_name="bench", source_config={
    "dataset": dataset, "inbox": inbox, "patterns": ["*"], "recursive": True, "settle_seconds": 0,
    "post_action": "leave", "concurrency": 16, "connections": 2, "conn_id": sys.argv[3]})
t0 = time.perf_counter()
out = op.execute({"data_interval_start": end - timedelta(hours=1), "data_interval_end": end,
                  "run_id": "bench", "params": {}})
print(json.dumps(out))
print(f"TASK_S={time.perf_counter() - t0}")
report_peak()
exit_like_a_task_process()
"""

PEER = """
import sys, os, time
from airflow.providers.amazon.aws.transfers.sftp_to_s3 import SFTPToS3Operator
from bench.common import exit_like_a_task_process, report_peak
conn, mode, prefix, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
t0 = time.perf_counter()
for rel in files:
    op = SFTPToS3Operator(task_id="peer", sftp_conn_id=conn, sftp_path=rel, s3_conn_id="aws_default",
                          s3_bucket="landing", s3_key=prefix + rel, use_temp_file=(mode == "temp"))
    op.execute({})
print(f"TASK_S={time.perf_counter() - t0}")
report_peak()
exit_like_a_task_process()
"""

BOTO = """
import sys, json, time, boto3
from concurrent.futures import ThreadPoolExecutor
from bench.common import report_peak
c = json.loads(sys.argv[1]); prefix = sys.argv[2]; base = sys.argv[3]; files = sys.argv[4:]
ex = c.get("extra", {})
cl = boto3.client("s3", endpoint_url=ex["endpoint_url"], aws_access_key_id=c["login"],
                  aws_secret_access_key=c["password"], region_name=ex.get("region_name", "us-east-1"))
t0 = time.perf_counter()
for rel in files:
    cl.upload_file(base + "/" + rel, "landing", prefix + rel)
print(f"TASK_S={time.perf_counter() - t0}")
report_peak()
"""

READ_OURS = """
import asyncio, hashlib, sys
from concurrent.futures import ThreadPoolExecutor
from s3lander.hooks.sftp_fast import FastSftpHook, fetch
from bench.common import report_peak
path, conn, how = sys.argv[1], sys.argv[2], sys.argv[3]
async def main():
    h = hashlib.sha256()  # what the landing computes on the way
    async with FastSftpHook(conn).pool(1) as p:
        size = (await p.primary.stat(path)).size
        if how == "bulk":  # what the landing does with a large file: a bulk session
            await p.fetch(path, h.update, executor=ThreadPoolExecutor(2), sha256=False, expected_size=size)
        else:  # asyncssh's SFTP client on the pool's session
            await fetch(p.primary, path, h.update, executor=ThreadPoolExecutor(2), sha256=False, expected_size=size)
asyncio.run(main())
report_peak()
"""

READ_PARAMIKO = """
import sys, socket, paramiko
from bench.common import report_peak
from s3lander.hooks.sftp_fast import FastSftpHook
t = FastSftpHook("sftp_partner").target
sock = socket.create_connection((t.host, t.port)); sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
tr = paramiko.Transport(sock); tr.use_compression(False)
tr.connect(username=t.username, pkey=paramiko.Ed25519Key.from_private_key_file(t.key_file))
sftp = paramiko.SFTPClient.from_transport(tr)
class Hashing:  # the SHA-256 every read path here computes
    h = __import__("hashlib").sha256()
    def write(self, b): self.h.update(b); return len(b)
sftp.getfo(sys.argv[1], Hashing(), prefetch=True)
report_peak()
"""


def _empty_bucket(client: Any) -> None:
    """Delete what the subjects landed, so the store is as full for the last run as for the first."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="landing"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", []) if not o["Key"].startswith("_stack/")]
        for i in range(0, len(keys), 1000):
            client.delete_objects(Bucket="landing", Delete={"Objects": keys[i:i + 1000], "Quiet": True})


def _median(runs: list[Measured]) -> Measured:
    """The median of the runs that succeeded; of an even number, the slower of the middle two
    (a failed run must not make a subject look faster)."""
    ok = sorted((m for m in runs if m.returncode == 0), key=lambda m: m.wall_s)
    return ok[len(ok) // 2] if ok else max(runs, key=lambda m: m.wall_s)


def _fast_subjects(files: list[str], batch: Path, ssh_opts: list[str], info: dict[str, Any], aws: str,
                   root: Path) -> dict[str, Any]:
    """Subject name -> argv of its run number ``r``: the limits, the read paths and ours."""
    inbox, n = files[0].split("/")[0], len(files)
    fast: dict[str, Any] = {
        "openssh sftp get (read limit)": lambda r: time_rss_cmd(
            ["sftp", *ssh_opts, "-o", "Ciphers=aes128-gcm@openssh.com", "-b", str(batch),
             f"{info['user']}@{info['host']}"]),
        "boto3 upload (write limit)": lambda r: [PY, "-c", BOTO, aws, f"boto/{n}/r{r}/", str(root), *files],
        # a fresh dataset per run: its ledger is empty, so every run lands every file
        "ours": lambda r: [PY, "-c", forked_task(OURS), inbox, f"ours{n}r{r}", "sftp_partner"],
    }
    if n == 1:  # how the SSH library and transport were chosen
        fast["ours, asyncssh transport"] = lambda r: [PY, "-c", forked_task(OURS), inbox, f"oursa{n}r{r}",
                                                      "sftp_partner_asyncssh"]
        fast["read only, ours (bulk session over ssh)"] = lambda r: [PY, "-c", READ_OURS, files[0], "sftp_partner",
                                                                     "bulk"]
        fast["read only, asyncssh client over ssh"] = lambda r: [PY, "-c", READ_OURS, files[0], "sftp_partner",
                                                                 "client"]
        fast["read only, asyncssh transport"] = lambda r: [PY, "-c", READ_OURS, files[0], "sftp_partner_asyncssh",
                                                           "client"]
        fast["paramiko read only (prefetch+nodelay)"] = lambda r: [PY, "-c", READ_PARAMIKO, files[0]]
    return fast


def report_targets(rec: Recorder, size: str) -> None:
    """The issue's targets at one shape, as ratios (printed, and recorded as subject ``targets``).

    Ours and the SFTPToS3Operator run as Airflow runs a task, in a process forked from a worker
    that has imported Airflow (``forked_task``): they are compared on ``task_process_s``. The
    limit's commands run as their users run them (whole process). Whole-process ratios, which
    charge the Airflow import to every run, are printed beside them. A stopped peer's wall time
    is a lower bound, so the ratio against it is too."""
    fig = rec.figures(size)
    ours, ours_whole = fig.get(("ours", "task_process_s")), fig.get(("ours", "wall_s"))
    if not ours or not ours_whole:
        return
    lines = [f"targets ({size}):"]
    limit = fig.get(("limit", "wall_s"))
    if limit:
        rec.record("targets", "of_pipeline_limit_x", ours / limit, size, whole_process_x=round(ours_whole / limit, 3))
        lines.append(f"  ours {ours:.2f} s = {ours / limit:.2f}x the pipeline limit {limit:.2f} s (target <= 1.3); "
                     f"whole process {ours_whole / limit:.2f}x")
    for (subject, metric), value in fig.items():
        if not subject.startswith("SFTPToS3Operator") or metric != "wall_s":
            continue
        stopped = "stopped" in subject
        theirs = value if stopped else fig.get((subject, "task_process_s"), value)
        rec.record("targets", "faster_than_peer_x", theirs / ours, size, peer=subject, lower_bound=stopped,
                   whole_process_x=round(value / ours_whole, 3))
        lines.append(f"  ours {'>= ' if stopped else ''}{theirs / ours:.2f}x faster than {subject} (target >= 3); "
                     f"whole process {value / ours_whole:.2f}x")
    lines.append(f"  ours peak RSS {fig.get(('ours', 'peak_rss_mb'), 0):.0f} MB (target < 250)")
    print("\n".join(lines), flush=True)


def main() -> None:
    from include.sample_data.partner_files import write_random_file
    from include.stack.cli import Stack

    rec = Recorder("sftp")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sftp-"))
    stack = Stack(tmp / "stack")
    try:
        rec.record("machine", "load_avg_1m_start", os.getloadavg()[0], "run")
        stack.up(["sshd", "s3"])
        env = {**stack.environment(), "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",
               "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        # the peer as users get it: the SSH hook's defaults (compression on); and with compression off
        partner = json.loads(env["AIRFLOW_CONN_SFTP_PARTNER"])
        partner["extra"].pop("compress", None)
        env["AIRFLOW_CONN_SFTP_PARTNER_DEFAULT"] = json.dumps(partner)
        in_process = json.loads(env["AIRFLOW_CONN_SFTP_PARTNER"])
        in_process["extra"]["transport"] = "asyncssh"
        env["AIRFLOW_CONN_SFTP_PARTNER_ASYNCSSH"] = json.dumps(in_process)
        os.environ.update(env)
        svc, s3_state = stack.service("s3")
        s3 = svc.client(s3_state)
        _, sshd = stack.service("sshd")
        root = Path(sshd.info["root"])
        old = time.time() - 7200
        write_random_file(root / "big" / "big.bin", GIB, mtime=old)
        small_dir = root / "small"
        block = os.urandom(SMALL_SIZE)
        small = []
        for i in range(SMALL_N):
            p = small_dir / f"f{i:04d}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(block[i:] + block[:i])
            os.utime(p, (old, old))
            small.append(f"small/{p.name}")
        shapes = {"1 GiB file": (["big/big.bin"], GIB), f"{SMALL_N} x 200 KiB": (small, SMALL_N * SMALL_SIZE)}
        info = sshd.info
        ssh_opts = ["-q", "-o", f"UserKnownHostsFile={info['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
                    "-i", info["key_file"], "-P", str(info["port"])]
        aws = env["AIRFLOW_CONN_AWS_DEFAULT"]

        def record(subject: str, m: Measured, size: str, nbytes: int, nfiles: int, runs: list[Measured]) -> None:
            if m.returncode == 0:
                rec.record_run(subject, m, size)
            else:  # stopped or failed: no PEAK_RSS_MB line
                rec.record(subject, "wall_s", m.wall_s, size, returncode=m.returncode)
            rec.record(subject, "mb_per_s", nbytes / 1e6 / m.wall_s, size)
            rec.record(subject, "files_per_s", nfiles / m.wall_s, size)
            task = printed_seconds(m, "TASK_S") if m.returncode == 0 else None
            if task is not None:
                rec.record(subject, "task_s", task, size)
            process = printed_seconds(m, "TASK_PROCESS_S") if m.returncode == 0 else None
            if process is not None:
                rec.record(subject, "task_process_s", process, size)
            if len(runs) > 1:
                rec.record(subject, "runs_wall_s", len(runs), size, runs=[round(r.wall_s, 2) for r in runs],
                           failed=sum(r.returncode != 0 for r in runs))

        for size, (files, nbytes) in shapes.items():
            batch = tmp / "batch.txt"
            batch.write_text("".join(f"get {f} /dev/null\n" for f in files))
            n = len(files)
            fast = _fast_subjects(files, batch, ssh_opts, info, aws, root)
            # round by round, so that the store filling up and load from elsewhere hit every subject alike
            runs: dict[str, list[Measured]] = {name: [] for name in fast}
            for r in range(REPEAT):
                for name, argv in fast.items():
                    m = run_measured(argv(r), env=env, check=False)
                    print(f"  {size} / {name} run {r + 1}/{REPEAT}: {m.wall_s:.2f} s, peak {m.peak_rss_mb:.0f} MB, "
                          f"rc {m.returncode}" + (f"\n{m.stderr[-2000:]}" if m.returncode else ""), flush=True)
                    runs[name].append(m)
                    _empty_bucket(s3)
            picked = {name: _median(ms) for name, ms in runs.items()}
            for name, ms in runs.items():
                if any(m.returncode != 0 for m in ms):
                    print(f"WARNING {size} / {name}: {sum(m.returncode != 0 for m in ms)} of {len(ms)} runs failed; "
                          "its figures come from the others and this run's ratios are not comparable", flush=True)
            for name, m in picked.items():
                record(name, m, size, nbytes, n, runs[name])
            m_read, m_up = picked["openssh sftp get (read limit)"], picked["boto3 upload (write limit)"]
            limit = max(m_read.wall_s, m_up.wall_s)
            rec.record("limit", "wall_s", limit, size)
            rec.record("limit", "mb_per_s", nbytes / 1e6 / limit, size)
            rec.record("limit", "files_per_s", n / limit, size)
            rec.record("limit", "task_s", max(m_read.wall_s, printed_seconds(m_up, "TASK_S") or m_up.wall_s), size)
            summary = next((ln for ln in picked["ours"].stdout.splitlines() if ln.startswith("{")), "?")
            print("ours:", summary, flush=True)
            for conn, mode, label in (("sftp_partner_default", "temp", "temp file, hook defaults (compression on)"),
                                      ("sftp_partner", "temp", "temp file, compression off"),
                                      ("sftp_partner_default", "stream", "streaming, hook defaults")):
                m = run_measured([PY, "-c", forked_task(PEER), conn, mode, f"peer-{mode}/", *files], env=env,
                                 check=False, timeout=PEER_TIMEOUT)
                name = f"SFTPToS3Operator {label}"
                if m.returncode != 0:
                    name += f" (stopped at {m.wall_s:.0f} s: lower bound)"
                record(name, m, size, nbytes, n, [m])
                _empty_bucket(s3)
            report_targets(rec, size)
        if os.environ.get("SFTP_BENCH_2GIB", "1") == "1":
            shutil.rmtree(root / "big")
            write_random_file(root / "huge" / "huge.bin", 2 * GIB, mtime=old)
            m = run_measured([PY, "-c", forked_task(OURS), "huge", "ours2g", "sftp_partner"], env=env, check=False)
            record("ours", m, "2 GiB file", 2 * GIB, 1, [m])
        rec.record("machine", "load_avg_1m_end", os.getloadavg()[0], "run")
        rec.table()
        print(json.dumps({"note": "shared 2-core machine: figures are noisy; compare within one run"}))
    finally:
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
