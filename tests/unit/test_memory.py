"""Process-wide memory settings of streaming tasks (``s3lander.memory``), each checked in a
fresh interpreter so the test process keeps its own allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path)})
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_bound_malloc_is_accepted_by_glibc_and_idempotent():
    code = ("from s3lander import memory\n"
            "print(memory.bound_malloc(), memory.bound_malloc(), memory.bound_malloc(mmap_threshold=1 << 20))")
    assert _run(code) == "True True True"


def test_arrow_system_pool_becomes_the_default_and_old_arrays_stay_valid():
    code = ("import pyarrow as pa\n"
            "from s3lander.memory import arrow_system_pool\n"
            "before = pa.array(range(100000))\n"
            "name = arrow_system_pool()\n"
            "after = pa.array(range(100000))\n"
            "assert before.equals(after)\n"
            "print(name, pa.default_memory_pool().backend_name, arrow_system_pool())")
    assert _run(code) == "system system system"


def _run_env(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path), **env})
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads counted in /proc")
def test_single_threaded_blas_loads_openblas_without_its_worker_threads():
    count = ("import os\n"
             "from s3lander.memory import single_threaded_blas\n"
             "{call}"
             "import numpy\n"
             "print(len(os.listdir('/proc/self/task')))")
    assert _run_env(count.format(call="assert single_threaded_blas()\n")) == "1"
    # without it numpy's OpenBLAS starts its own threads on a multi-core machine: what the helper avoids
    if (os.cpu_count() or 1) > 1:
        assert int(_run_env(count.format(call=""))) > 1


def test_single_threaded_blas_leaves_a_users_choice_and_a_loaded_numpy_alone():
    code = ("import os, sys\n"
            "from s3lander.memory import single_threaded_blas\n"
            "{pre}"
            "print(single_threaded_blas(), os.environ.get('OPENBLAS_NUM_THREADS'))")
    assert _run_env(code.format(pre=""), OPENBLAS_NUM_THREADS="4") == "False 4"
    assert _run_env(code.format(pre="import numpy\n")) == "False None"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_prepare_task_process_applies_every_setting_once_at_task_start():
    code = ("import gc, os\n"
            "from s3lander import memory\n"
            "memory.prepare_task_process(mmap_threshold=1 << 20)\n"
            "print(gc.get_freeze_count() > 0, memory._applied['malloc'], os.environ.get('OPENBLAS_NUM_THREADS'))")
    assert _run_env(code) == "True (1048576, 2) 1"
