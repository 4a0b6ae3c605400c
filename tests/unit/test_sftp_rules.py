"""Pure SFTP landing rules: config validation, discovery, settling, names, sidecars, ledger, actions."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from s3lander.config import ConfigError
from s3lander.sftp.actions import POST_ACTIONS, archive_path
from s3lander.sftp.config import SftpSource
from s3lander.sftp.ledger import Ledger, LedgerEntry
from s3lander.sftp.rules import (
    ChecksumFileError,
    RemoteFile,
    SettleTracker,
    UnsafeNameError,
    discover,
    matches,
    parse_checksum_file,
    safe_key_name,
    versioned_name,
)


# --- config ---------------------------------------------------------------------------------
def test_config_defaults_and_lists():
    s = SftpSource.from_dict("acme", {"patterns": "*.csv", "markers": [".done"]})
    assert s.dataset == "acme" and s.patterns == ("*.csv",) and s.markers == (".done",)
    assert s.companion_suffixes == (".done", ".sha256", ".md5")


@pytest.mark.parametrize(("raw", "msg"), [
    ({"post_action": "move"}, "post_action 'move'"),
    ({"markers": ["done"]}, "marker 'done'"),
    ({"inbox": "../etc"}, "inbox"),
    ({"concurrency": 0}, "concurrency"),
    ({"checksums": ["crc32"]}, "crc32"),
    ({"settle_secs": 5}, "unknown keys \\['settle_secs'\\]"),
    ({"dataset": "bad name"}, "dataset 'bad name'"),
    ({"recursive": True, "archive_dir": "inbox/archive"}, "inside the recursively scanned"),
])
def test_config_errors_name_the_source(raw, msg):
    with pytest.raises(ConfigError, match=f"source 'acme'.*{msg}"):
        SftpSource.from_dict("acme", raw)


def test_shipped_config_is_valid():
    from s3lander.sftp.config import load_sources

    sources = load_sources()
    assert sources["acme"].conn_id == "sftp_partner"


# --- discovery and settling -----------------------------------------------------------------
def test_matches_basename_and_path_patterns():
    assert matches("a/b/x.csv", ["*.csv"])
    assert matches("a/b/x.csv", ["a/*/x.csv"])
    assert not matches("a/b/x.csv", ["b/*.csv"])
    assert not matches("x.csv.tmp", ["*.csv"])
    assert not matches(".x.csv", ["*.csv"], exclude=[".*"])


def test_settle_tracker_uses_mtime_then_observed_changes():
    t = SettleTracker(60)
    f = RemoteFile("a.csv", 10, 1000.0)
    assert not t.is_settled(f, 1030)  # modified 30 s ago
    assert t.is_settled(f, 1061)
    grown = RemoteFile("a.csv", 20, 900.0)  # grew, but the writer kept an old mtime
    assert not t.is_settled(grown, 1100)  # the change was observed at 1100
    assert not t.is_settled(grown, 1150)
    assert t.is_settled(grown, 1160)


def test_settle_tracker_without_trusting_mtime_needs_two_looks():
    t = SettleTracker(10, trust_mtime=False)
    f = RemoteFile("a.csv", 1, 0.0)
    assert not t.is_settled(f, 100)
    assert t.is_settled(f, 110)
    assert SettleTracker.from_dict(10, t.to_dict(), trust_mtime=False).is_settled(f, 111)


def _files(*specs):
    return [RemoteFile(p, s, m) for p, s, m in specs]


def test_discover_splits_ready_waiting_later_and_pairs_companions():
    listing = _files(("a.csv", 5, 100), ("a.csv.sha256", 70, 100), ("b.csv", 5, 990), ("c.csv", 5, 2000),
                     ("d.txt", 5, 100))
    d = discover(listing, patterns=["*.csv"], checksums=["sha256"], tracker=SettleTracker(60), now=1000,
                 not_after=1500)
    assert [c.file.path for c in d.ready] == ["a.csv"] and d.ready[0].sidecar.path == "a.csv.sha256"
    assert [f.path for f in d.waiting] == ["b.csv"]
    assert [f.path for f in d.later] == ["c.csv"]


def test_discover_with_markers_ignores_settling():
    listing = _files(("a.csv", 5, 999), ("a.csv.ok", 0, 999), ("b.csv", 5, 1))
    d = discover(listing, patterns=["*"], markers=[".done", ".ok"], tracker=SettleTracker(60), now=1000)
    assert [(c.file.path, c.marker.path) for c in d.ready] == [("a.csv", "a.csv.ok")]
    assert [f.path for f in d.waiting] == ["b.csv"]  # old, but no marker yet


# --- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["report 2024.csv", "données_été.csv", "東京/売上.csv", "sub/dir/x.csv", "a..b.csv"])
def test_safe_names_are_kept(name):
    assert safe_key_name(name) == name


@pytest.mark.parametrize(("name", "why"), [
    ("../etc/passwd", "traversal"), ("a/../../b", "traversal"), ("/etc/passwd", "absolute"),
    ("a\nb.csv", "control"), ("a\rb", "control"), ("a\x00b", "control"), ("tab\tx", "control"),
    ("a\u2028b", "control"), ("a\\..\\b", "backslash"), ("./a", "traversal"), ("a//b", "traversal"),
    ("_manifest.json", "reserved"), ("_v2/a.csv", "reserved"), ("   ", "only spaces"), ("", "empty"),
])
def test_unsafe_names_are_refused_naming_the_file(name, why):
    with pytest.raises(UnsafeNameError, match=why) as e:
        safe_key_name(name)
    if name:
        assert repr(name) in str(e.value)


def test_names_are_nfc_normalised():
    assert safe_key_name("e\u0301te.csv") == "\u00e9te.csv"


def test_versioned_name_keeps_the_file_name():
    assert versioned_name("a/b.csv", 1) == "a/b.csv"
    assert versioned_name("a/b.csv", 3) == "_v3/a/b.csv"


# --- sidecars ---------------------------------------------------------------------------------
def test_parse_checksum_formats():
    h = hashlib.sha256(b"x").hexdigest()
    assert parse_checksum_file(h, "sha256", file_name="a.csv", sidecar="a.csv.sha256") == h
    assert parse_checksum_file(f"{h.upper()}  a.csv\n", "sha256", file_name="a.csv", sidecar="s") == h
    assert parse_checksum_file(f"{h} *a.csv", "sha256", file_name="a.csv", sidecar="s") == h
    assert parse_checksum_file(f"SHA256 (a.csv) = {h}", "sha256", file_name="a.csv", sidecar="s") == h
    m = hashlib.md5(b"x", usedforsecurity=False).hexdigest()
    many = f"{'0' * 32}  other.csv\n{m}  a.csv\n"
    assert parse_checksum_file(many, "md5", file_name="dir/a.csv", sidecar="s") == m


@pytest.mark.parametrize("text", ["", "not a checksum", "abc123  a.csv", f"{'0' * 32}  x\n{'1' * 32}  y"])
def test_bad_checksum_files_name_the_sidecar(text):
    with pytest.raises(ChecksumFileError, match="'a.csv.md5'"):
        parse_checksum_file(text, "md5", file_name="a.csv", sidecar="a.csv.md5")


# --- ledger -----------------------------------------------------------------------------------
def _entry(path="a.csv", size=3, mtime=1.0, sha="s1", key="p/a.csv", version=1):
    return LedgerEntry(path=path, size=size, mtime=mtime, sha256=sha, key=key, version=version)


def test_ledger_decisions():
    led = Ledger()
    assert led.next_version("a.csv") == 1 and led.latest("a.csv") is None
    led.add(_entry())
    assert led.already_landed("a.csv", 3, 1.0)
    assert not led.already_landed("a.csv", 3, 2.0)  # touched again: read it and compare checksums
    assert led.is_identical("a.csv", "s1", 3)
    assert not led.is_identical("a.csv", "s2", 3)
    assert led.next_version("a.csv") == 2
    led.add(_entry(sha="s2", mtime=2.0, key="q/a.csv", version=2))
    assert not led.is_identical("a.csv", "s1", 3)  # identical to the latest version only
    assert led.used_keys() == {"p/a.csv", "q/a.csv"}


def test_ledger_round_trip_and_idempotent_add():
    led = Ledger()
    assert led.add(_entry()) and not led.add(_entry())
    led.remember("m1")
    back = Ledger.from_json(led.to_json())
    assert back.entries == led.entries and back.manifests == ["m1"] and len(back) == 1
    with pytest.raises(ValueError, match="s3://b/k is not a valid SFTP ledger"):
        Ledger.from_json(b"[1]", source="s3://b/k")


def test_ledger_repairs_from_a_manifest_once():
    led = Ledger()
    extra = {"sftp_files": [_entry().to_dict(), _entry(path="b.csv", key="p/b.csv").to_dict()]}
    assert led.absorb_manifest("m", extra) == 2
    assert led.absorb_manifest("m", extra) == 0


# --- post actions -----------------------------------------------------------------------------
def test_archive_path_and_registry():
    assert archive_path("archive", date(2024, 1, 2), "sub/a.csv") == "archive/2024-01-02/sub/a.csv"
    assert archive_path("archive", date(2024, 1, 2), "a.csv", 2) == "archive/2024-01-02/a.csv.2"
    assert set(POST_ACTIONS) == {"archive", "delete", "leave"}
