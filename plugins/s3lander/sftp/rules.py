"""Which remote files to take: glob discovery, the stable-file rules, safe key names, sidecars.

A file is *complete* when either

* its companion marker exists (``<name>.done`` / ``<name>.ok``, when markers are configured), or
* its size and mtime have not changed for the settle period. The last change is the file's
  mtime, or, if a listing saw the (size, mtime) signature change, the time that listing saw
  it: a writer that preserves old mtimes (``sftp -p``, ``rsync -t``) is still caught growing.

A file is *eligible* for a run when it is complete and was modified before the run's
interval end, so a rerun or backfill of an interval never takes files delivered after it.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from s3lander.landing.layout import MANIFEST_NAME


class UnsafeNameError(ValueError):
    """A remote file name that cannot be landed safely; the message names the file."""


class ChecksumFileError(ValueError):
    """A sidecar checksum file that does not hold a checksum."""


@dataclass(frozen=True, order=True)
class RemoteFile:
    """One listed remote file. ``path`` is relative to the inbox, with '/' separators."""

    path: str
    size: int
    mtime: float

    @property
    def signature(self) -> tuple[str, int, float]:
        return (self.path, self.size, self.mtime)


# --- discovery ------------------------------------------------------------------------------
def matches(path: str, patterns: Iterable[str], exclude: Iterable[str] = ()) -> bool:
    """Glob match on the inbox-relative path; a pattern without '/' matches the base name."""

    def hit(p: str) -> bool:
        target = path if "/" in p else posixpath.basename(path)
        return fnmatch.fnmatchcase(target, p)

    return any(hit(p) for p in patterns) and not any(hit(p) for p in exclude)


def split_companions(files: Iterable[RemoteFile], suffixes: Iterable[str]) -> tuple[
        list[RemoteFile], dict[str, RemoteFile]]:
    """Separate data files from companions (markers, checksum sidecars) that sit beside them."""
    suffixes = tuple(suffixes)
    data, companions = [], {}
    for f in files:
        if suffixes and f.path.endswith(suffixes):
            companions[f.path] = f
        else:
            data.append(f)
    return data, companions


class SettleTracker:
    """Remembers, across listings, when each file's (size, mtime) signature was first seen changed.

    ``trust_mtime=False`` ignores server mtimes (clock skew, writers that set old mtimes) and
    requires the signature to be observed unchanged for the settle period by this tracker.
    """

    def __init__(self, settle_seconds: float, *, trust_mtime: bool = True) -> None:
        self.settle = settle_seconds
        self.trust_mtime = trust_mtime
        self._seen: dict[str, tuple[int, float, float]] = {}  # path -> (size, mtime, since)

    def observe(self, f: RemoteFile, now: float) -> float:
        """Record ``f`` seen at ``now``; return the time of its last known change."""
        prev = self._seen.get(f.path)
        if prev is not None and (prev[0], prev[1]) == (f.size, f.mtime):
            since = prev[2]
        elif prev is not None:  # it changed between two listings: changed no earlier than now
            since = now
        else:
            since = f.mtime if self.trust_mtime else now
        since = max(since, f.mtime) if self.trust_mtime else since
        self._seen[f.path] = (f.size, f.mtime, since)
        return since

    def is_settled(self, f: RemoteFile, now: float) -> bool:
        return now - self.observe(f, now) >= self.settle

    def to_dict(self) -> dict[str, list[float]]:
        return {p: list(v) for p, v in self._seen.items()}

    @classmethod
    def from_dict(cls, settle_seconds: float, d: Mapping[str, list[float]] | None, *,
                  trust_mtime: bool = True) -> SettleTracker:
        t = cls(settle_seconds, trust_mtime=trust_mtime)
        for p, (size, mtime, since) in (d or {}).items():
            t._seen[p] = (int(size), float(mtime), float(since))
        return t


@dataclass(frozen=True)
class Candidate:
    """A complete data file and the companions that travel with it."""

    file: RemoteFile
    marker: RemoteFile | None = None
    sidecar: RemoteFile | None = None

    @property
    def companions(self) -> list[RemoteFile]:
        return [c for c in (self.marker, self.sidecar) if c is not None]


@dataclass
class Discovery:
    ready: list[Candidate]
    waiting: list[RemoteFile]  # matching but not complete yet
    later: list[RemoteFile]  # modified after the interval end: for a later run


def discover(files: Iterable[RemoteFile], *, patterns: Iterable[str], exclude: Iterable[str] = (),
             markers: Iterable[str] = (), checksums: Iterable[str] = (), tracker: SettleTracker,
             now: float, not_after: float | None = None) -> Discovery:
    """Split a listing into files ready to land, files still settling, and files for later runs."""
    markers, checksums = tuple(markers), tuple(checksums)
    data, companions = split_companions(files, (*markers, *(f".{c}" for c in checksums)))
    out = Discovery([], [], [])
    for f in sorted(data):
        if not matches(f.path, patterns, exclude):
            continue
        if not_after is not None and f.mtime >= not_after:
            out.later.append(f)
            continue
        marker = next((companions[f.path + m] for m in markers if f.path + m in companions), None)
        sidecar = next((companions[f"{f.path}.{c}"] for c in checksums if f"{f.path}.{c}" in companions), None)
        settled = tracker.is_settled(f, now)
        if (marker is not None) if markers else settled:
            out.ready.append(Candidate(f, marker, sidecar))
        else:
            out.waiting.append(f)
    return out


# --- names ---------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_KEY_NAME_BYTES = 900  # S3 keys are at most 1024 bytes; leave room for the partition prefix


def safe_key_name(path: str) -> str:
    """The object name (inside the partition) for an inbox-relative path, or UnsafeNameError.

    Spaces and non-ASCII letters are kept as they are (NFC-normalised so one name has one
    key); traversal, absolute paths, control characters, newlines, backslashes and names
    that collide with the manifest are refused.
    """
    shown = repr(path)
    if not path:
        raise UnsafeNameError("refusing an empty file name")
    if _CONTROL.search(path) or any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in path):
        raise UnsafeNameError(f"refusing file {shown}: its name contains control characters or newlines")
    if path.startswith("/"):
        raise UnsafeNameError(f"refusing file {shown}: absolute paths are not allowed")
    if "\\" in path:
        raise UnsafeNameError(f"refusing file {shown}: backslashes are not allowed in names")
    parts = path.split("/")
    if any(p in {"", ".", ".."} for p in parts):
        raise UnsafeNameError(f"refusing file {shown}: path traversal ('..', '.', empty segments) is not allowed")
    if any(p.strip() == "" for p in parts):
        raise UnsafeNameError(f"refusing file {shown}: a path segment is only spaces")
    name = unicodedata.normalize("NFC", path)
    if name == MANIFEST_NAME or parts[0] == "_state" or parts[0].startswith("_v") and parts[0][2:].isdigit():
        raise UnsafeNameError(f"refusing file {shown}: the name is reserved by the landing layout")
    if len(name.encode()) > MAX_KEY_NAME_BYTES:
        raise UnsafeNameError(f"refusing file {shown}: name longer than {MAX_KEY_NAME_BYTES} bytes")
    return name


def versioned_name(name: str, version: int) -> str:
    """Where version ``n`` >= 2 of a name goes when the first name is taken in the same partition.

    The original file name stays intact under a ``_v<n>/`` folder.
    """
    return name if version <= 1 else f"_v{version}/{name}"


# --- sidecar checksums -------------------------------------------------------------------------
_HEX = {"sha256": 64, "md5": 32}


def parse_checksum_file(text: bytes | str, algo: str, *, file_name: str, sidecar: str) -> str:
    """The hex digest in a ``.sha256``/``.md5`` sidecar (``sha256sum`` format or a bare digest).

    When the sidecar lists several files, the line naming ``file_name`` is used.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    want = _HEX[algo]
    base = posixpath.basename(file_name)
    found: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(rf"^(?:{algo.upper()} \((?P<n1>.+)\) = (?P<h1>[0-9a-fA-F]{{{want}}})|"
                     rf"(?P<h2>[0-9a-fA-F]{{{want}}})(?:\s+\*?(?P<n2>.+))?)$", line)
        if not m:
            raise ChecksumFileError(f"checksum file {sidecar!r} is not a {algo} checksum file: line {line[:80]!r}")
        found.append(((m.group("h1") or m.group("h2")).lower(), m.group("n1") or m.group("n2")))
    if not found:
        raise ChecksumFileError(f"checksum file {sidecar!r} is empty")
    if len(found) == 1:
        return found[0][0]
    for digest, name in found:
        if name is not None and posixpath.basename(name.strip()) == base:
            return digest
    raise ChecksumFileError(f"checksum file {sidecar!r} lists several files but not {base!r}")
