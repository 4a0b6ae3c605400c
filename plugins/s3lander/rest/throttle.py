"""Staying under an API's limits: a client-side request budget, ``Retry-After``, backoff with jitter.

All time comes from injected ``clock``/``sleep`` callables so the behaviour is tested with a
fake clock, never with real waiting.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class RateLimiter:
    """At most ``requests`` requests in any rolling ``per_seconds`` window (a sliding log).

    A server stamps a request somewhere between our send and our receipt of its answer, and a
    busy server can stamp it late. So each entry of the log is moved to the moment the answer
    arrived (``completed()``): the next window then starts no earlier than the server's stamp,
    whatever the latency, and a sequential client never provokes a 429 — at the cost of one
    round-trip per window (a few ms on a 1-s window). ``margin`` widens the window by a fraction
    for servers whose clocks run differently. ``pause_until`` makes every following request wait
    (after a 429 with ``Retry-After``).
    """

    def __init__(self, requests: int, per_seconds: float, *, margin: float = 0.0, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep) -> None:
        if requests <= 0 or per_seconds <= 0:
            raise ValueError(f"rate limit must be positive, got {requests} requests per {per_seconds} s")
        self.requests, self.window = requests, per_seconds * (1.0 + margin)
        self.clock, self.sleep = clock, sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self.waited_s = 0.0

    def acquire(self) -> float:
        """Block until one more request may start; return the seconds waited."""
        waited = 0.0
        while True:
            now = self.clock()
            wait = self._paused_until - now
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            if wait <= 0 and len(self._starts) >= self.requests:
                wait = self._starts[0] + self.window - now
            if wait <= 0:
                self._starts.append(now)
                self.waited_s += waited
                return waited
            self.sleep(wait)
            waited += wait

    def completed(self) -> None:
        """The answer to the last acquired request arrived: count the request from now."""
        if self._starts:
            self._starts[-1] = max(self._starts[-1], self.clock())

    def pause_until(self, t: float) -> None:
        self._paused_until = max(self._paused_until, t)


class NoLimit:
    """The limiter of an endpoint without a declared rate limit."""

    waited_s = 0.0

    def acquire(self) -> float:
        return 0.0

    def completed(self) -> None:
        pass

    def pause_until(self, t: float) -> None:
        pass


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass
class RetryPolicy:
    """Which failures to retry and how long to wait: ``Retry-After`` when the server says, else
    exponential backoff with "equal jitter" (half fixed, half random), capped."""

    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 300.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({408, 425, 429, 500, 502, 503, 504}))
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        self.retry_statuses = frozenset(self.retry_statuses)

    @classmethod
    def from_options(cls, options: dict | None) -> RetryPolicy:
        o = dict(options or {})
        statuses: Iterable[int] | None = o.pop("retry_statuses", None)
        policy = cls(**o)
        if statuses is not None:
            policy.retry_statuses = frozenset(int(s) for s in statuses)
        return policy

    def retryable(self, status: int) -> bool:
        return status in self.retry_statuses

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based) when the server gave no Retry-After."""
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return cap / 2 + self.rng.uniform(0, cap / 2)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # a little jitter on top, so many workers told "1 s" do not return in lockstep
            return retry_after + self.rng.uniform(0, min(0.25, self.backoff_base_s))
        return self.backoff(attempt)
