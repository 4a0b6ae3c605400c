"""Process-wide memory settings for transfer tasks that stream large data through native buffers.

A task process (Airflow forks one per task) that moves megabytes per batch through pyarrow,
a native reader (connectorx) and upload threads ends up with a peak RSS well above the bytes
in flight, for two reasons measured on the MySQL benchmark (1M rows, 50k-row batches):

- glibc's *dynamic* mmap threshold: after the first large buffer (above 128 KiB) is freed,
  glibc raises the threshold up to 32 MiB, so later batch buffers come from the heap and from
  per-thread arenas (one per native/upload thread, 64 MiB reservations), where they fragment
  and stay resident. A fixed threshold keeps large buffers on ``mmap`` (returned to the OS on
  ``free``) and ``M_ARENA_MAX`` caps the number of arenas;
- pyarrow's default pool (mimalloc in the wheels) keeps freed segments for reuse; its
  ``system`` pool allocates through glibc, so the fixed threshold above applies to Arrow
  buffers too and a freed batch leaves the process at once.

Both together took ~20 MB off the operator's data path at the same CPU time. Linux/glibc
only: elsewhere (or with another libc) ``bound_malloc`` does nothing.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: mallopt() parameter numbers (glibc <malloc.h>)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

_applied: dict[str, tuple[int, int]] = {}


def bound_malloc(*, mmap_threshold: int = 256 * 1024, arena_max: int = 2) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes and cap its arenas at ``arena_max``.

    Process-wide and idempotent; returns whether glibc accepted both settings. Call it at the
    start of a task, before the large buffers are allocated."""
    if _applied.get("malloc") == (mmap_threshold, arena_max):
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_ARENA_MAX, arena_max))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    if ok:
        _applied["malloc"] = (mmap_threshold, arena_max)
    return ok


def arrow_system_pool() -> str:
    """Make glibc malloc pyarrow's default memory pool (see the module docstring); returns the
    pool's backend name. Arrays already allocated stay valid: each remembers its own pool."""
    import pyarrow as pa

    pool = pa.default_memory_pool()
    if pool.backend_name != "system":
        try:
            pa.set_memory_pool(pa.system_memory_pool())
        except (NotImplementedError, pa.ArrowNotImplementedError) as e:  # pragma: no cover - wheels have it
            log.debug("keeping pyarrow's %s pool: %s", pool.backend_name, e)
    return pa.default_memory_pool().backend_name


def prepare_task_process(*, mmap_threshold: int = 256 * 1024) -> None:
    """What a transfer task does to its process once, at the start of ``execute()``, before its
    threads and native buffers exist: the imports frozen out of the collector
    (``freeze_imported_objects``), glibc's allocator bounded (``bound_malloc``), numpy's OpenBLAS
    kept to one thread (``single_threaded_blas``). A task that moves Arrow data also calls
    ``arrow_system_pool()`` once it imports pyarrow."""
    freeze_imported_objects()
    bound_malloc(mmap_threshold=mmap_threshold)
    single_threaded_blas()


def single_threaded_blas() -> bool:
    """Load numpy's OpenBLAS with one thread, if numpy is not imported yet and the user has not
    chosen (``OPENBLAS_NUM_THREADS`` unset); returns whether it set the variable.

    pyarrow imports numpy, and numpy's bundled OpenBLAS starts its worker threads (one per core)
    when it loads, and they spin while they wait for work: measured 0.12 CPU s for ``import numpy``
    alone (0.21 s user against 0.09 s with one thread) on a 2-core machine. A transfer task never calls BLAS,
    and its time is bounded by the CPU it shares with the database and S3 server, so those
    spinning threads cost it directly. The variable is read once, when OpenBLAS loads; it is
    set in this task process only (and inherited by what it starts)."""
    import os
    import sys

    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


def freeze_imported_objects() -> None:
    """Move every object alive so far (the task process's imports: Airflow alone is over a million
    objects) out of the garbage collector's reach, as Airflow's executors do before they fork:
    the task then allocates many container objects (botocore's models, Arrow batch wrappers, the
    SFTP client's futures and packets), and each full collection would walk all of them again.
    Measured: MySQL benchmark, 0.12-0.15 s of collections per task, 0.04 s after the freeze; SFTP,
    1 GiB, 0.6-1.0 CPU s less per task (3 runs each: ``gc_collect_main`` and its traversals were
    ~6% of the task's samples in ``perf``). The frozen objects live as long as the task process."""
    import gc

    gc.freeze()
