"""Shared benchmark plumbing: measured subprocess runs, JSON-line figures, the ratio table.

Every figure is one JSON line ``{"bench", "subject", "metric", "value", "size"}`` printed and
appended to ``bench/results/<bench>.jsonl``. ``Recorder.table()`` ends a benchmark with a
human table of the same figures and the ratios ours/peer and ours/limit per metric and size.
Subjects run as separate processes (``run_measured``) so each peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
#: metrics where smaller is better (the ratio table says "x slower" / "x faster" accordingly)
LOWER_IS_BETTER = {"wall_s", "peak_rss_mb", "lag_s", "seconds"}


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    returncode: int


def run_measured(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 stdin: Any = subprocess.DEVNULL, check: bool = True, timeout: float = 3600) -> Measured:
    """Run a command; return its wall time and peak RSS (of the process tree it waited for)."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampled = [0.0]

    def sample() -> None:  # the child's own VmHWM, until it exits
        while proc.poll() is None:
            sampled[0] = max(sampled[0], tree_peak_rss_mb(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join(timeout=1)
    # what the subject printed (exact, includes its own children) wins over the sampled value
    peak = _peak_from_output(out) or sampled[0]
    m = Measured(wall, peak, out, err, proc.returncode)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} failed ({proc.returncode}):\n{err[-3000:]}")
    return m


def _peak_from_output(out: str) -> float | None:
    """Subjects written in Python print ``PEAK_RSS_MB=<n>`` last (see ``report_peak``)."""
    for line in reversed(out.splitlines()):
        if line.startswith("PEAK_RSS_MB="):
            return float(line.split("=", 1)[1])
    return None


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak RSS of one process's own address space (``VmHWM``), in MB.

    Not ``getrusage().ru_maxrss``: Linux carries that high-water mark across ``execve``, so a
    process spawned by a big parent (pytest, a benchmark driver) reports the parent's peak.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def report_peak() -> None:
    """Call at the end of a Python subject: prints its own peak RSS for ``run_measured``."""
    print(f"PEAK_RSS_MB={peak_rss_mb():.1f}", flush=True)


def exit_like_a_task_process() -> None:
    """End a Python subject as an Airflow task process ends (``supervisor._fork_main``: atexit
    handlers, then ``os._exit``), without the interpreter teardown a worker never runs."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


#: runs a task script the way an Airflow 3 worker runs a task on Linux (see ``forked_task``)
_FORKED_TASK = """
import os, sys, time
sys.path[:0] = [{plugins!r}, {repo!r}]
import airflow.sdk.execution_time.supervisor  # noqa: F401 - what a worker holds when it forks a task
TASK = {task!r}
sys.stdout.flush()
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: a stopped run stops its task too
        exec(compile(TASK, "<task>", "exec"), {{"__name__": "__task__"}})
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:  # the task ends with exit_like_a_task_process(): getting here means it failed
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(70)
_, status = os.waitpid(pid, 0)
print("TASK_PROCESS_S", time.perf_counter() - t0, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def forked_task(task: str) -> str:
    """A script that runs the Python script ``task`` as an Airflow 3 task process: forked from a
    process that has imported the Task SDK's supervisor (on Linux ``supervisor.WatchedSubprocess
    .start`` is a bare ``os.fork()`` of the worker's supervisor, so a task process never imports
    Airflow itself; it imports what its DAG file adds, here the operator's module). The script
    prints ``TASK_PROCESS_S``, the task process's wall time from fork to exit, after what ``task``
    prints; the process's own wall time still covers interpreter start and the Airflow import.
    ``task`` must end with ``exit_like_a_task_process()``."""
    return _FORKED_TASK.format(task=task, plugins=str(REPO / "plugins"), repo=str(REPO))


def printed_seconds(m: Measured, label: str) -> float | None:
    """The value of a ``<label> <seconds>`` or ``<label>=<seconds>`` line a subject printed
    (``TASK_S``, ``TASK_PROCESS_S``)."""
    for line in m.stdout.splitlines():
        if line.startswith((label + " ", label + "=")):
            return float(line[len(label) + 1:])
    return None


def tree_peak_rss_mb(pid: int) -> float:
    """The largest own peak (``VmHWM``) among ``pid`` and its live descendants, in MB: a command
    run through ``sh -c`` is measured as itself, not as the shell."""
    import psutil

    peak = 0.0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return peak
    for p in procs:
        try:
            peak = max(peak, peak_rss_mb(p.pid))
        except (OSError, RuntimeError):
            pass
    return peak


#: runs a command and reports its peak RSS by sampling the VmHWM of its process tree until it exits
_SHIM = """
import subprocess, sys, time
from bench.common import tree_peak_rss_mb
p = subprocess.Popen(sys.argv[1:])
peak = 0.0
while p.poll() is None:
    peak = max(peak, tree_peak_rss_mb(p.pid))
    time.sleep(0.02)
print(f"PEAK_RSS_MB={peak:.1f}")
sys.exit(p.returncode)
"""


def time_rss_cmd(argv: list[str]) -> list[str]:
    """Wrap a non-Python command so its own peak RSS is reported (sampled ``VmHWM``)."""
    env_path = f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
    return [sys.executable, "-c", env_path + _SHIM, *argv]


class Recorder:
    """Collects one benchmark's figures and prints them as JSON lines and a ratio table."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.rows: list[dict[str, Any]] = []
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.path = RESULTS / f"{bench}.jsonl"

    def record(self, subject: str, metric: str, value: float, size: str, **extra: Any) -> None:
        row = {"bench": self.bench, "subject": subject, "metric": metric, "value": round(float(value), 4),
               "size": size, **extra}
        self.rows.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")

    def record_run(self, subject: str, m: Measured, size: str, *, units: float | None = None,
                   unit_metric: str | None = None) -> None:
        """wall_s and peak_rss_mb of a measured run, plus ``unit_metric`` = units / wall_s."""
        self.record(subject, "wall_s", m.wall_s, size)
        self.record(subject, "peak_rss_mb", m.peak_rss_mb, size)
        if units is not None and unit_metric:
            self.record(subject, unit_metric, units / m.wall_s, size)

    def figures(self, size: str) -> dict[tuple[str, str], float]:
        """The figures recorded so far at ``size``, by (subject, metric)."""
        return {(r["subject"], r["metric"]): r["value"] for r in self.rows if r["size"] == size}

    def table(self) -> str:
        """Figures by (size, metric), with ours/<other> ratios; printed and returned."""
        by: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for r in self.rows:
            by[(r["size"], r["metric"])][r["subject"]] = r["value"]
        lines = [f"\n== {self.bench}", f"{'size':<22} {'metric':<14} {'subject':<34} {'value':>12}  ours/this"]
        for (size, metric), subjects in by.items():
            ours = subjects.get("ours")
            for subject, value in subjects.items():
                ratio = ""
                if ours is not None and subject != "ours" and value:
                    ratio = f"{ours / value:.2f}"
                lines.append(f"{size:<22} {metric:<14} {subject:<34} {value:>12.3f}  {ratio}")
        text = "\n".join(lines)
        print(text, flush=True)
        return text
