"""Table configs of the SQL -> S3 pattern: one validated dataclass per table.

``include/config/mysql_tables.yaml`` declares the source connection, defaults and one entry
per table; adding a table is a config entry, not code. Every error names the file and key.
``TableConfig.to_dict()``/``from_dict()`` round-trip through JSON, which is how a table's
settings travel to mapped tasks (``expand(table=[...])``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from s3lander.landing.layout import LayoutError, check_segment
from s3lander.sql.identifiers import IdentifierError, check_identifier

MODES = ("incremental", "snapshot")
FORMATS = ("parquet", "jsonl.gz")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BYTES = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


class TableConfigError(ValueError):
    """An invalid table entry; the message names the file and key."""


def parse_duration(value: Any, *, what: str) -> timedelta:
    """``90`` (seconds), ``"15m"``, ``"1h"``, ``"0s"`` -> timedelta (never negative)."""
    if isinstance(value, bool):
        raise TableConfigError(f"{what}: {value!r} is not a duration")
    if isinstance(value, (int, float)) and value >= 0:
        return timedelta(seconds=value)
    m = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise TableConfigError(f"{what}: {value!r} is not a duration like 90, '15m', '1h' or '0s'")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def parse_size(value: Any, *, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) <= 0:
        raise TableConfigError(f"{what}: {value!r} is not a positive size like 134217728 or '128MiB'")
    return int(m.group(1)) * _BYTES[m.group(2)]


def _positive_int(value: Any, *, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TableConfigError(f"{what}: {value!r} must be a positive integer")
    return value


@dataclass(frozen=True)
class SplitConfig:
    """Split one table's window into ``parts`` ranges of the integer column ``column`` (the
    leading primary-key column), extracted by parallel mapped tasks and published as one manifest."""

    column: str
    parts: int


@dataclass(frozen=True)
class TableConfig:
    name: str
    mode: str = "incremental"
    watermark: str | None = None
    primary_key: tuple[str, ...] = ()
    lookback: timedelta = timedelta(0)
    format: str = "parquet"
    max_rows: int = 1_000_000
    max_bytes: int = 128 * 1024 * 1024
    batch_rows: int = 25_000
    threshold: int | None = None
    columns: tuple[str, ...] | None = None
    split: SplitConfig | None = None
    dataset: str = ""
    source_path: str = field(default="config", compare=False)

    def __post_init__(self) -> None:
        where = f"{self.source_path}: tables.{self.name}"
        try:
            check_identifier(self.name, what=f"{where}: table name")
            for c in self.primary_key:
                check_identifier(c, what=f"{where}.primary_key")
            for c in self.columns or ():
                check_identifier(c, what=f"{where}.columns")
            if self.watermark is not None:
                check_identifier(self.watermark, what=f"{where}.watermark")
            if self.split is not None:
                check_identifier(self.split.column, what=f"{where}.split.column")
            check_segment(self.dataset or self.name, what=f"{where}.dataset")
        except (IdentifierError, LayoutError) as e:
            raise TableConfigError(str(e)) from None
        if not self.dataset:
            object.__setattr__(self, "dataset", self.name)
        if self.mode not in MODES:
            raise TableConfigError(f"{where}.mode: {self.mode!r} is not one of {list(MODES)}")
        if self.mode == "incremental" and not self.watermark:
            raise TableConfigError(f"{where}: an incremental table needs `watermark:` (an indexed timestamp column)")
        if self.format not in FORMATS:
            raise TableConfigError(f"{where}.format: {self.format!r} is not one of {list(FORMATS)}")
        if self.threshold is not None and not self.watermark:
            raise TableConfigError(f"{where}: `threshold:` needs a `watermark:` column")
        if self.columns is not None:
            for needed in filter(None, (self.watermark, self.split.column if self.split else None)):
                if needed not in self.columns:
                    raise TableConfigError(f"{where}.columns must include {needed!r}")
        if self.split is not None and self.split.parts < 1:
            raise TableConfigError(f"{where}.split.parts must be >= 1")

    @property
    def table_ref(self) -> str:
        """The table as the SQL names it (the connection's database)."""
        return self.name

    @property
    def threshold_dataset(self) -> str:
        """Where the threshold DAG lands this table (its own dataset, its own watermark)."""
        return f"{self.dataset}_threshold"

    def with_overrides(self, **changes: Any) -> TableConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lookback"] = int(self.lookback.total_seconds())
        d["primary_key"] = list(self.primary_key)
        d["columns"] = list(self.columns) if self.columns is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableConfig:
        d = dict(d)
        split = d.get("split")
        d["split"] = SplitConfig(**split) if isinstance(split, dict) else split
        d["lookback"] = parse_duration(d.get("lookback", 0), what="lookback")
        d["primary_key"] = tuple(d.get("primary_key") or ())
        d["columns"] = tuple(d["columns"]) if d.get("columns") is not None else None
        return cls(**d)


_TABLE_KEYS = {"mode", "watermark", "primary_key", "lookback", "format", "max_rows", "max_bytes", "batch_rows",
               "threshold", "columns", "split", "dataset"}


@dataclass(frozen=True)
class SourceConfig:
    """The whole config file: which connection, which landing source name, which tables."""

    conn_id: str
    source: str
    pool: str | None
    tables: tuple[TableConfig, ...]
    threshold_poke_seconds: int = 60

    def table(self, name: str) -> TableConfig:
        for t in self.tables:
            if t.name == name:
                return t
        raise TableConfigError(f"no table {name!r} in the config (tables: {[t.name for t in self.tables]})")

    def by_mode(self, mode: str, *, split: bool | None = None) -> list[TableConfig]:
        out = [t for t in self.tables if t.mode == mode]
        if split is not None:
            out = [t for t in out if (t.split is not None) == split]
        return out

    def with_threshold(self) -> list[TableConfig]:
        return [t for t in self.tables if t.threshold is not None]


def _table_from_yaml(name: str, raw: Any, defaults: dict[str, Any], path: str) -> TableConfig:
    where = f"{path}: tables.{name}"
    raw = raw or {}
    if not isinstance(raw, dict):
        raise TableConfigError(f"{where} must be a mapping")
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise TableConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_TABLE_KEYS)}")
    v = {**defaults, **raw}
    split = v.get("split")
    if split is not None:
        if not isinstance(split, dict) or set(split) != {"column", "parts"}:
            raise TableConfigError(f"{where}.split must be {{column: <integer pk column>, parts: <n>}}")
        split = SplitConfig(column=split["column"], parts=_positive_int(split["parts"], what=f"{where}.split.parts"))
    pk = v.get("primary_key") or ()
    pk = (pk,) if isinstance(pk, str) else tuple(pk)
    columns = v.get("columns")
    threshold = raw.get("threshold")  # only tables that ask for it; `true` takes defaults.threshold
    if threshold is True:
        if "threshold" not in defaults:
            raise TableConfigError(f"{where}.threshold: true needs defaults.threshold")
        threshold = defaults["threshold"]
    if threshold is False:
        threshold = None
    if threshold is not None:
        threshold = _positive_int(threshold, what=f"{where}.threshold")
    return TableConfig(
        name=name, mode=v.get("mode", "incremental"), watermark=v.get("watermark"), primary_key=pk,
        lookback=parse_duration(v.get("lookback", 0), what=f"{where}.lookback"),
        format=v.get("format", "parquet"),
        max_rows=_positive_int(v.get("max_rows", 1_000_000), what=f"{where}.max_rows"),
        max_bytes=parse_size(v.get("max_bytes", 128 * 1024 * 1024), what=f"{where}.max_bytes"),
        batch_rows=_positive_int(v.get("batch_rows", 25_000), what=f"{where}.batch_rows"),
        threshold=threshold, columns=tuple(columns) if columns is not None else None, split=split,
        dataset=v.get("dataset") or name, source_path=path)


def parse_source_config(data: dict[str, Any], *, path: str = "config") -> SourceConfig:
    """Validate a loaded YAML mapping (see include/config/mysql_tables.yaml)."""
    for key in ("conn_id", "source", "tables"):
        if key not in data:
            raise TableConfigError(f"{path}: missing top-level key {key!r}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - _TABLE_KEYS:
        raise TableConfigError(f"{path}: defaults must be a mapping of {sorted(_TABLE_KEYS)}")
    if not isinstance(data["tables"], dict) or not data["tables"]:
        raise TableConfigError(f"{path}: tables must be a non-empty mapping of table name -> settings")
    try:
        check_segment(data["source"], what=f"{path}: source")
    except LayoutError as e:
        raise TableConfigError(str(e)) from None
    tables = tuple(_table_from_yaml(str(n), raw, defaults, path) for n, raw in data["tables"].items())
    datasets = [t.dataset for t in tables]
    dupes = sorted({d for d in datasets if datasets.count(d) > 1})
    if dupes:
        raise TableConfigError(f"{path}: several tables land to the same dataset {dupes}")
    poke = data.get("threshold_poke_seconds", 60)
    return SourceConfig(conn_id=str(data["conn_id"]), source=data["source"], pool=data.get("pool"), tables=tables,
                        threshold_poke_seconds=_positive_int(poke, what=f"{path}: threshold_poke_seconds"))


def load_source_config(name: str = "mysql_tables.yaml") -> SourceConfig:
    """Load and validate ``include/config/<name>`` (cached YAML, no network: fine at DAG parse time)."""
    from s3lander import settings
    from s3lander.config import load_yaml

    return parse_source_config(load_yaml(name), path=str(settings.CONFIG_DIR / name))
