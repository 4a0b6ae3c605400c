"""The ledger of landed files: what was taken from which path, in which version, to which key.

Kept as one JSON object on S3 next to the data (``<dataset>/_state/sftp_ledger.json``) and
written only after the interval's manifest is published, so a file is "landed" exactly when
a published manifest lists it. Each manifest also carries its ledger entries (in ``extra``),
so a crash between publishing and writing the ledger is repaired by the next run
(``Ledger.absorb_manifest``) instead of landing the files twice.

Decisions for a complete file at ``path`` with (size, mtime):

* same path, size and mtime as a landed version -> ``skip`` without reading it;
* otherwise read it (hashing on the way); if its SHA-256 equals the latest landed version of
  that path -> ``identical`` (a re-delivery: nothing is published);
* else -> a new version, landed under a key no earlier version used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

LEDGER_NAME = "sftp_ledger.json"
LEDGER_VERSION = 1
MAX_REMEMBERED_MANIFESTS = 200


@dataclass(frozen=True)
class LedgerEntry:
    """One landed version of one remote file."""

    path: str
    size: int
    mtime: float
    sha256: str
    key: str
    version: int = 1
    interval_start: str = ""
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ledger:
    entries: dict[str, list[LedgerEntry]] = field(default_factory=dict)  # path -> versions, oldest first
    manifests: list[str] = field(default_factory=list)  # manifest keys whose entries are included

    # --- decisions -----------------------------------------------------------------------
    def latest(self, path: str) -> LedgerEntry | None:
        versions = self.entries.get(path)
        return versions[-1] if versions else None

    def already_landed(self, path: str, size: int, mtime: float) -> LedgerEntry | None:
        """The landed version with this exact size and mtime (no need to read the file)."""
        for e in reversed(self.entries.get(path, [])):
            if e.size == size and e.mtime == mtime:
                return e
        return None

    def is_identical(self, path: str, sha256: str, size: int) -> LedgerEntry | None:
        """The latest landed version if its content equals ``sha256`` (a re-delivery)."""
        e = self.latest(path)
        return e if e is not None and e.sha256 == sha256 and e.size == size else None

    def next_version(self, path: str) -> int:
        versions = self.entries.get(path, [])
        return (max(e.version for e in versions) + 1) if versions else 1

    def used_keys(self) -> set[str]:
        return {e.key for vs in self.entries.values() for e in vs}

    # --- updates -------------------------------------------------------------------------
    def add(self, entry: LedgerEntry) -> bool:
        """Add a version (idempotent: the same key and checksum is not added twice)."""
        versions = self.entries.setdefault(entry.path, [])
        if any(e.key == entry.key and e.sha256 == entry.sha256 for e in versions):
            return False
        versions.append(entry)
        return True

    def absorb_manifest(self, manifest_key: str, extra: dict[str, Any] | None) -> int:
        """Merge the ledger entries a published manifest carries; returns how many were new."""
        if manifest_key in self.manifests:
            return 0
        n = sum(self.add(LedgerEntry(**d)) for d in (extra or {}).get("sftp_files", []))
        self.remember(manifest_key)
        return n

    def remember(self, manifest_key: str) -> None:
        if manifest_key not in self.manifests:
            self.manifests.append(manifest_key)
        del self.manifests[:-MAX_REMEMBERED_MANIFESTS]

    # --- serialisation -------------------------------------------------------------------
    def to_json(self) -> bytes:
        doc = {"ledger_version": LEDGER_VERSION, "manifests": self.manifests,
               "files": {p: [e.to_dict() for e in vs] for p, vs in sorted(self.entries.items())}}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | None, *, source: str = "ledger") -> Ledger:
        if not raw:
            return cls()
        try:
            doc = json.loads(raw)
            entries = {p: [LedgerEntry(**e) for e in vs] for p, vs in doc.get("files", {}).items()}
            return cls(entries=entries, manifests=list(doc.get("manifests", [])))
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{source} is not a valid SFTP ledger: {e}") from e

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())
