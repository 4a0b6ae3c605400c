"""SFTP sources declared in ``include/config/sftp_sources.yaml``, validated into dataclasses.

Every error names the file and the source, so a typo fails DAG parsing with a message a user
can act on rather than a task failing at 3 a.m.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from s3lander.config import ConfigError, load_yaml
from s3lander.landing.layout import LayoutError, check_segment

CONFIG_FILE = "sftp_sources.yaml"
POST_ACTIONS = ("archive", "delete", "leave")
SIDECARS = ("sha256", "md5")


@dataclass(frozen=True)
class SftpSource:
    """One partner inbox that lands into ``raw/<source>/<dataset>/``.

    :param inbox: folder relative to the SFTP session's start directory (or absolute)
    :param patterns: glob patterns matched against the path relative to the inbox
    :param settle_seconds: a file is complete when size and mtime are unchanged this long
    :param markers: companion suffixes (``.done``, ``.ok``); when set, a file is complete
        only once ``<name><marker>`` exists (the settle period is then not needed)
    :param checksums: sidecar suffixes checked when present (``sha256``, ``md5``)
    :param post_action: what to do with the source after a verified landing
    :param archive_dir: where ``archive`` moves files, ``<archive_dir>/YYYY-MM-DD/<relative path>``
    :param concurrency: files in flight at once
    :param connections: SSH connections opened (files are spread over them)
    """

    name: str
    dataset: str
    conn_id: str = "sftp_partner"
    inbox: str = "inbox"
    patterns: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    recursive: bool = False
    settle_seconds: float = 60.0
    markers: tuple[str, ...] = ()
    checksums: tuple[str, ...] = SIDECARS
    require_checksum: bool = False
    post_action: str = "archive"
    archive_dir: str = "archive"
    concurrency: int = 8
    connections: int = 2
    sensor_timeout_minutes: float = 50.0
    poke_seconds: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"{CONFIG_FILE}: source {self.name!r}"
        try:
            check_segment(self.name, what="source name")
            check_segment(self.dataset, what="dataset")
        except LayoutError as e:
            raise ConfigError(f"{where}: {e}") from None
        if not self.inbox or "\x00" in self.inbox or ".." in self.inbox.split("/"):
            raise ConfigError(f"{where}: inbox {self.inbox!r} must be a folder path without '..'")
        if not self.patterns or not all(isinstance(p, str) and p for p in self.patterns):
            raise ConfigError(f"{where}: patterns must be a non-empty list of glob strings")
        if self.settle_seconds < 0:
            raise ConfigError(f"{where}: settle_seconds must be >= 0, got {self.settle_seconds}")
        for m in self.markers:
            if not m.startswith(".") or "/" in m or len(m) < 2:
                raise ConfigError(f"{where}: marker {m!r} must be a suffix like '.done'")
        bad = [c for c in self.checksums if c not in SIDECARS]
        if bad:
            raise ConfigError(f"{where}: checksums {bad} not supported; use {list(SIDECARS)}")
        if self.require_checksum and not self.checksums:
            raise ConfigError(f"{where}: require_checksum needs at least one checksum suffix")
        if self.post_action not in POST_ACTIONS:
            raise ConfigError(f"{where}: post_action {self.post_action!r} must be one of {list(POST_ACTIONS)}")
        if self.post_action == "archive" and (not self.archive_dir or ".." in self.archive_dir.split("/")):
            raise ConfigError(f"{where}: archive_dir {self.archive_dir!r} must be a folder path without '..'")
        if self.post_action == "archive" and _inside(self.archive_dir, self.inbox) and self.recursive:
            raise ConfigError(f"{where}: archive_dir {self.archive_dir!r} is inside the recursively scanned "
                              f"inbox {self.inbox!r}; archived files would be discovered again")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"{where}: concurrency must be 1..64, got {self.concurrency}")
        if not 1 <= self.connections <= 8:
            raise ConfigError(f"{where}: connections must be 1..8, got {self.connections}")

    @property
    def companion_suffixes(self) -> tuple[str, ...]:
        """Suffixes of files that travel with a data file and are never landed themselves."""
        return (*self.markers, *(f".{c}" for c in self.checksums))

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> SftpSource:
        if not isinstance(raw, dict):
            raise ConfigError(f"{CONFIG_FILE}: source {name!r} must be a mapping")
        known = set(cls.__dataclass_fields__) - {"name", "extra"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{CONFIG_FILE}: source {name!r} has unknown keys {unknown}; known: {sorted(known)}")
        kw: dict[str, Any] = {}
        for k, v in raw.items():
            if k in {"patterns", "exclude", "markers", "checksums"}:
                v = (v,) if isinstance(v, str) else tuple(v or ())
            kw[k] = v
        kw.setdefault("dataset", name)
        try:
            return cls(name=name, **kw)
        except TypeError as e:
            raise ConfigError(f"{CONFIG_FILE}: source {name!r}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _inside(child: str, parent: str) -> bool:
    c, p = posixpath.normpath(child), posixpath.normpath(parent)
    return c == p or c.startswith(p.rstrip("/") + "/")


def load_sources(name: str = CONFIG_FILE, config_dir: str | None = None) -> dict[str, SftpSource]:
    """All sources of the config file, by name (parse-time safe: a local YAML read)."""
    data = load_yaml(name, config_dir)
    raw = data.get("sources")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{name}: 'sources' must be a non-empty mapping of source name -> settings")
    defaults = data.get("defaults") or {}
    return {n: SftpSource.from_dict(n, {**defaults, **(v or {})}) for n, v in raw.items()}
