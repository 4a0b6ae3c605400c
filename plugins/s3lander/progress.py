"""Progress lines for long tasks: counts, rate and, when the total is known, an ETA.

A user watching a task log sees it move: ``progress.add(rows=..., bytes=...)`` is cheap and
logs at most every ``every_s`` seconds, plus once at the end.
"""

from __future__ import annotations

import logging
import time
from typing import Any


class Progress:
    def __init__(self, what: str, *, unit: str = "rows", total: int | None = None, every_s: float = 10.0,
                 logger: logging.Logger | Any = None) -> None:
        self.what, self.unit, self.total, self.every_s = what, unit, total, every_s
        self.log = logger or logging.getLogger("s3lander.progress")
        self.count = 0
        self.bytes = 0
        self._t0 = self._last = time.monotonic()

    def add(self, n: int = 0, *, nbytes: int = 0) -> None:
        self.count += n
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit(now)

    def done(self) -> None:
        self._emit(time.monotonic(), final=True)

    def _emit(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._t0, 1e-9)
        rate = self.count / elapsed
        mb = self.bytes / 1e6
        if self.total:
            pct = 100.0 * self.count / self.total
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            self.log.info("%s: %s %d/%d %s (%.1f%%), %.1f MB, %.0f %s/s, ETA %.0f s", self.what,
                          "done" if final else "progress", self.count, self.total, self.unit, pct, mb, rate,
                          self.unit, eta)
        else:
            self.log.info("%s: %s %d %s, %.1f MB, %.0f %s/s, %.1f MB/s", self.what, "done" if final else "progress",
                          self.count, self.unit, mb, rate, self.unit, mb / elapsed)
