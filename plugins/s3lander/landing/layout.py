"""S3 key layout of the landing zone: one deterministic prefix per dataset and interval.

``s3://<bucket>/<zone>/<source>/<dataset>/dt=YYYY-MM-DD/hour=HH/part-NNNNN.<ext>``, with
``_manifest.json`` beside the parts. Keys derive from the interval start (UTC) only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from s3lander.landing.intervals import Interval, as_utc

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MANIFEST_NAME = "_manifest.json"


class LayoutError(ValueError):
    """A name that cannot be part of a key."""


def check_segment(value: str, *, what: str) -> str:
    """Allow only names that are safe and unambiguous as one key segment."""
    if not isinstance(value, str) or not _SEGMENT.match(value) or value in {".", ".."}:
        raise LayoutError(f"{what} {value!r} is not a valid key segment (letters, digits, '_', '-', '.'; "
                          "must start with a letter or digit; at most 128 characters)")
    return value


@dataclass(frozen=True)
class DatasetLocation:
    """Where one dataset lands: ``s3://bucket/zone/source/dataset/``."""

    bucket: str
    zone: str
    source: str
    dataset: str

    def __post_init__(self) -> None:
        for what in ("bucket", "zone", "source", "dataset"):
            check_segment(getattr(self, what), what=what)

    @property
    def prefix(self) -> str:
        return f"{self.zone}/{self.source}/{self.dataset}/"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def name(self) -> str:
        return f"{self.zone}.{self.source}.{self.dataset}"

    def partition_prefix(self, interval_or_start: Interval | datetime) -> str:
        return self.prefix + partition_path(interval_or_start)

    def part_key(self, interval: Interval | datetime, index: int, ext: str, *, stem: str = "part") -> str:
        return self.partition_prefix(interval) + part_name(index, ext, stem=stem)

    def manifest_key(self, interval: Interval | datetime) -> str:
        return self.partition_prefix(interval) + MANIFEST_NAME

    def state_key(self, name: str) -> str:
        """Dataset-level state (watermarks, ledgers, checkpoints) kept next to the data."""
        return f"{self.prefix}_state/{check_segment(name, what='state name')}"


def partition_path(interval_or_start: Interval | datetime) -> str:
    """``dt=YYYY-MM-DD/hour=HH/`` of the interval start, in UTC."""
    start = interval_or_start.start if isinstance(interval_or_start, Interval) else as_utc(interval_or_start)
    return f"dt={start:%Y-%m-%d}/hour={start:%H}/"


def part_name(index: int, ext: str, *, stem: str = "part") -> str:
    if index < 0 or index > 99_999:
        raise LayoutError(f"part index {index} is out of range 0..99999")
    return f"{check_segment(stem, what='part stem')}-{index:05d}.{ext.lstrip('.')}"


_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


def parse_partition(key: str) -> datetime | None:
    """The partition start encoded in a key, or None if the key has no partition."""
    m = _PARTITION.search(key)
    if not m:
        return None
    return as_utc(f"{m.group(1)}T{m.group(2)}:00:00+00:00")
