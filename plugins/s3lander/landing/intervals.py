"""Data intervals: the half-open UTC window ``[start, end)`` a run is responsible for.

Everything that names or selects data for a run derives from its interval, never from the
wall clock, so a rerun or a backfill of the same interval addresses the same rows and keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any


class IntervalError(ValueError):
    """An interval that cannot be used: naive, reversed, or zero-width."""


def as_utc(value: datetime | str, *, what: str = "timestamp") -> datetime:
    """Parse/normalise to an aware UTC datetime; naive values are refused, not guessed."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise IntervalError(f"{what} {value!r} is not an ISO-8601 timestamp") from e
    if value.tzinfo is None or value.utcoffset() is None:
        raise IntervalError(f"{what} {value.isoformat()} has no time zone; give it in UTC (e.g. ...+00:00)")
    v = value.astimezone(timezone.utc)  # also turns pendulum DateTimes into plain datetimes
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=timezone.utc)


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open UTC window ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start, what="interval start"))
        object.__setattr__(self, "end", as_utc(self.end, what="interval end"))
        if self.end <= self.start:
            raise IntervalError(
                f"interval [{self.start.isoformat()}, {self.end.isoformat()}) is empty or reversed; "
                "a windowed DAG needs a data-interval timetable (CronDataIntervalTimetable), "
                "or pass window_start < window_end")

    @property
    def width(self) -> timedelta:
        return self.end - self.start

    def with_lookback(self, lookback: timedelta) -> Interval:
        """The same window opened ``lookback`` earlier, for late-arriving rows."""
        return Interval(self.start - lookback, self.end)

    def contains(self, ts: datetime) -> bool:
        return self.start <= as_utc(ts) < self.end

    def split(self, step: timedelta) -> Iterator[Interval]:
        """Consecutive sub-windows of ``step`` covering the interval exactly (the last may be shorter)."""
        if step <= timedelta(0):
            raise IntervalError(f"split step must be positive, got {step}")
        cur = self.start
        while cur < self.end:
            nxt = min(cur + step, self.end)
            yield Interval(cur, nxt)
            cur = nxt

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> Interval:
        return cls(as_utc(d["start"]), as_utc(d["end"]))

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def interval_from_context(context: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Interval:
    """The run's window: ``params.window_start/window_end`` when given, else the data interval.

    A zero-width data interval (what a cron string's CronTriggerTimetable gives) is an error
    with a message saying which timetable to use, rather than an empty extract.
    """
    params = params if params is not None else context.get("params") or {}
    start = params.get("window_start") or context.get("data_interval_start")
    end = params.get("window_end") or context.get("data_interval_end")
    if start is None or end is None:
        # a run triggered without a logical date (REST API, UI form with the date cleared) has no
        # data interval: give it the last complete interval before it was triggered, as Airflow
        # does for a manual run with a logical date
        manual = manual_interval(context)
        if manual is not None:
            start, end = start or manual.start, end or manual.end
    if start is None or end is None:
        raise IntervalError("the run has no data interval; schedule the DAG with a data-interval timetable "
                            "or pass window_start and window_end params")
    return Interval(as_utc(start, what="window_start"), as_utc(end, what="window_end"))


def manual_interval(context: Mapping[str, Any]) -> Interval | None:
    """The last complete interval of the DAG's timetable before the run's ``run_after``, if it has one."""
    dag, dag_run = context.get("dag"), context.get("dag_run")
    run_after, timetable = getattr(dag_run, "run_after", None), getattr(dag, "timetable", None)
    if run_after is None or timetable is None:
        return None
    import pendulum

    if not hasattr(timetable, "infer_manual_data_interval"):  # the Task SDK's declarative timetables
        try:
            from airflow.serialization.encoders import coerce_to_core_timetable
        except ImportError:  # a worker without airflow-core
            return None
        timetable = coerce_to_core_timetable(timetable)
    infer = getattr(timetable, "infer_manual_data_interval", None)
    if infer is None:
        return None
    di = infer(run_after=pendulum.instance(as_utc(run_after, what="run_after")))
    if di is None or di.start >= di.end:
        return None
    return Interval(as_utc(di.start), as_utc(di.end))
