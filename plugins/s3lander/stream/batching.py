"""Batch boundaries: when a run stops reading a shard (time), and when it stops reading at all (count, bytes).

The time boundary is the run's data interval. Two strategies (``BOUNDARIES``):

``arrival`` (default)  a shard is read up to the first record that arrived at or after the
                       interval end; later records are left for the next run. With the
                       checkpoint fixed, the batch is then the same whenever the run happens.
``drain``              read to the tip of every shard as it is when the run reads it. For a
                       one-shot catch-up, for the demo (whose interval lies in the past), and
                       for event-driven runs, which have no meaningful interval end.

Count and byte limits (``BatchLimits``) stop the whole batch early; what is left stays in the
stream for the next run. The part writer rolls parts separately (``max_rows``/``max_bytes``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from s3lander.landing.intervals import Interval, as_utc


class Boundary(ABC):
    """Decides whether a record still belongs to the batch being read."""

    name: ClassVar[str]

    @abstractmethod
    def admits(self, arrival: datetime) -> bool: ...


class ArrivalBoundary(Boundary):
    """Records that arrived before the interval end belong to the batch."""

    name = "arrival"

    def __init__(self, interval: Interval) -> None:
        self.end = interval.end

    def admits(self, arrival: datetime) -> bool:
        return as_utc(arrival) < self.end


class DrainBoundary(Boundary):
    """Every record present when the shard is read belongs to the batch."""

    name = "drain"

    def __init__(self, interval: Interval) -> None:
        self.interval = interval

    def admits(self, arrival: datetime) -> bool:
        return True


BOUNDARIES: dict[str, type[Boundary]] = {cls.name: cls for cls in (ArrivalBoundary, DrainBoundary)}


def get_boundary(name: str, interval: Interval) -> Boundary:
    try:
        return BOUNDARIES[name](interval)
    except KeyError:
        raise ValueError(f"unknown batch boundary {name!r}; choose one of {sorted(BOUNDARIES)}") from None


@dataclass(frozen=True)
class BatchLimits:
    """Stop reading after ``max_records`` records or ``max_bytes`` bytes (data + partition keys).

    The byte limit is checked before taking each record, so a batch exceeds it by at most one
    record (at most 1 MiB in Kinesis). ``per_shard_chunk`` is how many records the reader
    takes from one shard before moving to the next (round-robin), so one busy shard cannot
    starve the others when a limit cuts the batch. ``page_size`` is the GetRecords ``Limit``
    (at most 10,000): fewer, larger calls; what a page returns beyond a turn stays buffered.
    """

    max_records: int = 500_000
    max_bytes: int = 256 * 1024 * 1024
    per_shard_chunk: int = 1000
    page_size: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_records", "max_bytes", "per_shard_chunk", "page_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"batch limit {name} must be a positive integer, got {value!r}")

    @classmethod
    def from_params(cls, **values: Any) -> BatchLimits:
        """From templated/param values (strings from Jinja become ints; None keeps the default)."""
        clean = {}
        for k, v in values.items():
            if v is None or v == "":
                continue
            try:
                clean[k] = int(v)
            except (TypeError, ValueError):
                raise ValueError(f"batch limit {k} must be an integer, got {v!r}") from None
        return cls(**clean)


def batch_id(interval: Interval) -> str:
    """The batch's name, from its interval start: ``20240101T235500Z`` (a key segment and a sort key)."""
    return f"{interval.start:%Y%m%dT%H%M%S}Z"
