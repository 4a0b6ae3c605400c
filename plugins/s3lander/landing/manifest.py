"""The ``_manifest.json`` of one published interval: what landed, how much, and where it came from.

A manifest is written last. Readers that wait for it never see a partial interval, and it
carries everything needed to verify the parts (sizes, row counts, SHA-256) and to resume
incremental loads (the source watermark).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from s3lander.landing.intervals import Interval

MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest that does not parse or does not add up."""


@dataclass(frozen=True)
class FileEntry:
    """One landed object."""

    key: str
    bytes: int
    rows: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ColumnSpec:
    """A column of the landed schema, in Arrow type names (``decimal128(10, 2)``, ``timestamp[us, tz=UTC]``)."""

    name: str
    type: str
    nullable: bool = True


@dataclass
class Manifest:
    """Everything a reader needs to trust one interval of one dataset."""

    dataset: str
    location: str
    interval: Interval
    run_id: str
    format: str
    files: list[FileEntry] = field(default_factory=list)
    schema: list[ColumnSpec] = field(default_factory=list)
    watermark: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    published_at: str | None = None

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files]

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "dataset": self.dataset,
            "location": self.location,
            "interval": self.interval.to_dict(),
            "run_id": self.run_id,
            "published_at": self.published_at,
            "format": self.format,
            "rows": self.rows,
            "bytes": self.bytes,
            "file_count": len(self.files),
            "files": [f.to_dict() for f in self.files],
            "schema": [asdict(c) for c in self.schema],
            "watermark": self.watermark,
            "extra": self.extra,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str).encode()

    @classmethod
    def from_json(cls, raw: bytes | str, *, source: str = "manifest") -> Manifest:
        try:
            d = json.loads(raw)
            files = [FileEntry(**f) for f in d["files"]]
            m = cls(dataset=d["dataset"], location=d["location"], interval=Interval.from_dict(d["interval"]),
                    run_id=d["run_id"], format=d["format"], files=files,
                    schema=[ColumnSpec(**c) for c in d.get("schema", [])], watermark=d.get("watermark"),
                    extra=d.get("extra", {}), published_at=d.get("published_at"))
        except (ValueError, KeyError, TypeError) as e:
            raise ManifestError(f"{source} is not a valid manifest: {e}") from e
        if d.get("rows") != m.rows or d.get("bytes") != m.bytes:
            raise ManifestError(f"{source}: totals do not match its file list "
                                f"(rows {d.get('rows')} vs {m.rows}, bytes {d.get('bytes')} vs {m.bytes})")
        return m


def schema_of(arrow_schema: Any) -> list[ColumnSpec]:
    """ColumnSpecs of a pyarrow schema (types as Arrow prints them)."""
    return [ColumnSpec(name=f.name, type=str(f.type), nullable=bool(f.nullable)) for f in arrow_schema]


@dataclass(frozen=True)
class SchemaChange:
    """What changed between two schemas of the same dataset."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()  # (column, old type, new type)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped)

    def to_dict(self) -> dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed),
                "retyped": [{"column": c, "from": a, "to": b} for c, a, b in self.retyped]}


def diff_schema(old: list[ColumnSpec], new: list[ColumnSpec]) -> SchemaChange:
    before = {c.name: c.type for c in old}
    after = {c.name: c.type for c in new}
    return SchemaChange(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        retyped=tuple((n, before[n], after[n]) for n in after if n in before and before[n] != after[n]),
    )
