"""A partner's SFTP deliveries for the demo and the benchmark: CSV drops, a sidecar, a big file.

``prepare_sftp(stack, start, end)`` (a demo PREPARER) writes deterministic order files into the
local sshd's ``inbox/`` with mtimes inside ``[start, end)``, so they are settled and belong to
the demo's interval. ``write_random_file`` makes large files fast (one random block repeated).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def orders_csv(day: datetime, batch: int, rows: int, seed: int = 42) -> bytes:
    rnd = random.Random(seed * 1000 + batch)  # noqa: S311 - sample data
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["order_id", "customer", "amount", "currency", "ordered_at"])
    for i in range(rows):
        w.writerow([batch * 100_000 + i, f"C{rnd.randint(1, 500):04d}", f"{rnd.uniform(1, 900):.2f}", "EUR",
                    (day + timedelta(seconds=rnd.randint(0, 86_399))).isoformat()])
    return buf.getvalue().encode()


def drop(inbox: Path, rel: str, data: bytes, mtime: float) -> Path:
    p = inbox / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))
    return p


def write_random_file(path: Path, size: int, *, block: int = 4 << 20, mtime: float | None = None) -> Path:
    """``size`` bytes of incompressible data, written at disk speed (a random block repeated)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(block)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(chunk[:min(left, block)])
            left -= block
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def prepare_sftp(stack: Any, start: datetime, end: datetime, *, files: int = 12, rows: int = 2000) -> list[Path]:
    """Put a day of partner files into the demo's sftp inbox (settled: mtimes inside the day)."""
    _, state = stack.service("sshd")
    inbox = Path(state.info["root"]) / "inbox"
    out = []
    step = (end - start) / (files + 1)
    for b in range(files):
        ts = (start + step * (b + 1)).timestamp()
        data = orders_csv(start, b, rows)
        rel = f"orders {start:%Y-%m-%d} batch {b:02d}.csv" if b % 3 else f"eu/orders_{start:%Y%m%d}_{b:02d}.csv"
        out.append(drop(inbox, rel, data, ts))
        if b == 0:  # the partner sends a checksum for some files
            out.append(drop(inbox, rel + ".sha256", f"{hashlib.sha256(data).hexdigest()}  {rel}\n".encode(), ts))
    out.append(drop(inbox, "README.txt", b"not matched by the source's patterns\n", start.timestamp()))
    print(f"dropped {len(out)} partner files into {inbox}")
    return out
