"""SFTP -> S3 landing against the real OpenSSH sshd and the SeaweedFS S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.integration.sftp.conftest import body, current_interval_end, keys, land, manifest, prefix, put

pytestmark = pytest.mark.integration


@pytest.fixture()
def end() -> datetime:
    return current_interval_end()


@pytest.fixture(params=["openssh", "asyncssh"])
def via(request, monkeypatch) -> str:
    """The partner connection forced onto one SSH transport; returns its connection id."""
    conn = json.loads(os.environ["AIRFLOW_CONN_SFTP_PARTNER"])
    conn["extra"]["transport"] = request.param
    monkeypatch.setenv(f"AIRFLOW_CONN_SFTP_VIA_{request.param.upper()}", json.dumps(conn))
    return f"sftp_via_{request.param}"


def test_dag_run_lands_archives_and_reruns_identically(root, s3, airflow_db):
    """The real DAG (sensor + operator) lands names with spaces, unicode and a sub-folder, then archives."""
    from include.runner import failed_tasks, run_dag

    interval_end = datetime(2024, 1, 2, tzinfo=timezone.utc)
    files = {"orders 2024-01-01.csv": b"id,amount\n1,9.99\n", "bestellungen_ü_日本.csv": b"x\n" * 1000,
             "eu/returns.csv": b"id\n7\n", "notes.txt": b"ignored: pattern does not match"}
    for rel, data in files.items():
        p = put(root, rel, data)
        t = (interval_end - timedelta(minutes=30)).timestamp()
        os.utime(p, (t, t))
    run = run_dag("sftp_to_s3", interval_end=interval_end)
    assert run.state == "success", failed_tasks(run)
    pfx = "raw/acme/orders/dt=2024-01-01/hour=23/"
    m = json.loads(body(s3, pfx + "_manifest.json"))
    landed = {f["key"].removeprefix(pfx): f for f in m["files"]}
    assert set(landed) == {"orders 2024-01-01.csv", "bestellungen_ü_日本.csv", "eu/returns.csv"}
    for rel in landed:
        assert body(s3, pfx + rel) == files[rel]
        assert landed[rel]["sha256"] == hashlib.sha256(files[rel]).hexdigest()
    archived = sorted(str(p.relative_to(root / "archive")) for p in (root / "archive").rglob("*") if p.is_file())
    assert archived == sorted(f"2024-01-01/{r}" for r in landed)
    assert (root / "inbox" / "notes.txt").exists()
    ledger = json.loads(body(s3, "raw/acme/orders/_state/sftp_ledger.json"))
    assert set(ledger["files"]) == set(landed)

    # a rerun of the same interval publishes the same objects (nothing new was delivered)
    run = run_dag("sftp_to_s3", interval_end=interval_end)
    assert run.state in ("success",), failed_tasks(run)
    assert sorted(f["key"] for f in json.loads(body(s3, pfx + "_manifest.json"))["files"]) == sorted(
        f["key"] for f in m["files"])


def test_file_still_being_written_is_not_taken_until_complete(root, s3, dataset, end):
    p = put(root, "growing.csv", b"a" * 1000, age_s=0)  # just written: not settled
    out = land(dataset, end=end, settle_seconds=30)
    assert out["landed"] == 0 and out["not_complete"] == 1
    assert keys(s3, prefix(dataset, end)) == [prefix(dataset, end) + "_manifest.json"]
    with p.open("ab") as f:  # the writer goes on
        f.write(b"b" * 1000)
    assert land(dataset, end=end, settle_seconds=30)["landed"] == 0
    quiet = time.time() - 31  # the writer finished and nothing changed for the settle period
    os.utime(p, (quiet, quiet))
    out = land(dataset, end=end, settle_seconds=30)
    assert out["landed"] == 1
    assert body(s3, prefix(dataset, end) + "growing.csv") == b"a" * 1000 + b"b" * 1000


def test_marker_file_decides_completeness(root, s3, dataset, end):
    put(root, "batch.csv", b"1\n2\n")  # old, but its marker is missing
    assert land(dataset, end=end, markers=[".done"])["landed"] == 0
    put(root, "batch.csv.done", b"")
    assert land(dataset, end=end, markers=[".done"])["landed"] == 1
    assert not (root / "inbox" / "batch.csv.done").exists()  # archived with its data file
    assert keys(s3, prefix(dataset, end)) == [prefix(dataset, end) + n for n in ("_manifest.json", "batch.csv")]


def _sshd_children(sshd_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(sshd_pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_connection_dropped_mid_transfer_fails_cleanly_and_retry_lands(root, s3, sshd, dataset, end, via):
    block = os.urandom(1 << 20)
    data_path = put(root, "big.bin", b"")
    with data_path.open("wb") as f:
        for _ in range(384):
            f.write(block)
    t = time.time() - 3600
    os.utime(data_path, (t, t))
    key = prefix(dataset, end) + "big.bin"
    result: dict[str, BaseException | dict] = {}

    def run() -> None:
        try:
            result["ok"] = land(dataset, end=end, post_action="leave", connections=1, conn_id=via)
        except BaseException as e:  # noqa: BLE001 - inspected below
            result["error"] = e

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill the sshd child once the multipart upload has begun
        if s3.list_multipart_uploads(Bucket="landing", Prefix=key).get("Uploads"):
            break
        time.sleep(0.05)
    killed = _sshd_children(sshd[1].pid)
    assert killed, "no sshd child process served the transfer"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    th.join(180)
    assert "error" in result, f"the attempt should fail when the connection drops, got {result}"
    assert "big.bin" in str(result["error"])
    assert key not in keys(s3, prefix(dataset, end))  # no partial object at the final key
    out = land(dataset, end=end, post_action="leave", conn_id=via)  # the retry
    assert out["landed"] == 1
    got = hashlib.sha256()
    for chunk in s3.get_object(Bucket="landing", Key=key)["Body"].iter_chunks(8 << 20):
        got.update(chunk)
    assert got.hexdigest() == hashlib.sha256(block * 384).hexdigest()


def test_checksum_mismatch_fails_that_file_only(root, s3, dataset, end):
    put(root, "good.csv", b"good\n")
    put(root, "good.csv.md5", (hashlib.md5(b"good\n", usedforsecurity=False).hexdigest() + "  good.csv\n").encode())
    put(root, "bad.csv", b"bad\n")
    put(root, "bad.csv.sha256", (hashlib.sha256(b"something else").hexdigest() + "\n").encode())
    with pytest.raises(Exception, match=r"(?s)bad\.csv.*sha256 mismatch"):
        land(dataset, end=end)
    m = manifest(s3, dataset, end)
    assert [f["key"].rsplit("/", 1)[1] for f in m["files"]] == ["good.csv"]
    assert keys(s3, prefix(dataset, end)) == sorted([prefix(dataset, end) + "_manifest.json",
                                                     prefix(dataset, end) + "good.csv"])
    assert (root / "inbox" / "bad.csv").read_bytes() == b"bad\n"  # left untouched
    assert (root / "inbox" / "bad.csv.sha256").exists()
    assert not (root / "inbox" / "good.csv").exists() and not (root / "inbox" / "good.csv.md5").exists()


def test_zero_byte_file(root, s3, dataset, end):
    put(root, "empty.csv", b"")
    assert land(dataset, end=end)["landed"] == 1
    (entry,) = manifest(s3, dataset, end)["files"]
    assert entry["bytes"] == 0 and entry["sha256"] == hashlib.sha256(b"").hexdigest()
    assert body(s3, prefix(dataset, end) + "empty.csv") == b""


def test_thousand_small_files_in_one_run(root, s3, dataset, end):
    for i in range(1000):
        put(root, f"part/f{i:04d}.csv", f"{i}\n".encode() * 20)
    out = land(dataset, end=end, recursive=True, concurrency=16, post_action="delete")
    assert out["landed"] == 1000 and out["failed"] == 0
    m = manifest(s3, dataset, end)
    assert m["file_count"] == 1000
    assert body(s3, prefix(dataset, end) + "part/f0999.csv") == b"999\n" * 20
    assert not list((root / "inbox" / "part").iterdir())


def test_large_file_streams_with_bounded_memory(root, s3, sshd, dataset, end):
    """2 GiB through a separate process; its peak RSS is reported and must stay a fraction of the file."""
    size_mib = 2048
    p = put(root, "large.bin", b"")
    block = os.urandom(4 << 20)
    with p.open("wb") as f:
        for _ in range(size_mib // 4):
            f.write(block)
    t = time.time() - 3600
    os.utime(p, (t, t))
    cfg = {"dataset": dataset, "inbox": "inbox", "settle_seconds": 5, "post_action": "leave"}
    code = ("import json,sys;from tests.integration.sftp.conftest import land;from datetime import datetime;"
            f"print(json.dumps(land({dataset!r}, end=datetime.fromisoformat({end.isoformat()!r}), "
            f"**{ {k: v for k, v in cfg.items() if k != 'dataset'} !r})));"
            "from bench.common import peak_rss_mb;print('PEAK', int(peak_rss_mb()))")
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "plugins"), str(repo)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    peak = int(out.stdout.split("PEAK")[-1])
    print(f"\nlanded a {size_mib} MiB file; peak RSS of the landing process: {peak} MB")
    assert peak < size_mib / 4, f"peak RSS {peak} MB for a {size_mib} MiB file: it was not streamed"
    (entry,) = manifest(s3, dataset, end)["files"]
    assert entry["bytes"] == size_mib << 20
    assert entry["sha256"] == hashlib.sha256(block * (size_mib // 4)).hexdigest()


def test_redelivered_identical_file_is_skipped_and_changed_file_is_a_new_version(root, s3, dataset, end):
    put(root, "daily.csv", b"v1\n")
    assert land(dataset, end=end)["landed"] == 1
    first_key = prefix(dataset, end) + "daily.csv"
    put(root, "daily.csv", b"v1\n", age_s=600)  # the partner sends the same bytes again
    out = land(dataset, end=end)
    assert out["landed"] == 0 and out["identical_skipped"] == 1
    assert not (root / "inbox" / "daily.csv").exists()  # archived after the verified skip
    put(root, "daily.csv", b"v2 changed\n", age_s=300)  # same name, new content, same interval
    assert land(dataset, end=end)["landed"] == 1
    assert body(s3, first_key) == b"v1\n"  # the earlier version is not overwritten
    assert body(s3, prefix(dataset, end) + "_v2/daily.csv") == b"v2 changed\n"
    assert sorted(f["key"] for f in manifest(s3, dataset, end)["files"]) == [
        prefix(dataset, end) + "_v2/daily.csv", first_key]
    nxt = end + timedelta(hours=1)
    put(root, "daily.csv", b"v3\n", age_s=60)  # next interval: lands under the same name in its partition
    assert land(dataset, end=nxt)["landed"] == 1
    assert body(s3, prefix(dataset, nxt) + "daily.csv") == b"v3\n"
    ledger = json.loads(body(s3, f"raw/itest/{dataset}/_state/sftp_ledger.json"))
    assert [e["version"] for e in ledger["files"]["daily.csv"]] == [1, 2, 3]


def test_host_key_mismatch_is_refused(root, s3, sshd, dataset, end, tmp_path, monkeypatch, via):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{via.upper()}"])
    conn["extra"]["host_key"] = other
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_WRONGKEY", json.dumps(conn))
    put(root, "x.csv", b"1\n")
    with pytest.raises(Exception, match=r"host key is unknown or has CHANGED.*presented ssh-ed25519 SHA256:"):
        land(dataset, end=end, conn_id="sftp_wrongkey")
    # unknown host: a known_hosts file that does not list the server
    conn["extra"].pop("host_key")
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:1 {other}\n")
    conn["extra"]["known_hosts"] = str(tmp_path / "known_hosts")
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_UNKNOWN", json.dumps(conn))
    with pytest.raises(Exception, match="host key is unknown or has CHANGED"):
        land(dataset, end=end, conn_id="sftp_unknown")
    assert (root / "inbox" / "x.csv").exists()


def test_unsafe_names_are_refused_and_safe_ones_land(root, s3, dataset, end, tmp_path):
    put(root, "report with spaces.csv", b"1\n")
    put(root, "données_été_東京.csv", b"2\n")
    put(root, "evil\nname.csv", b"3\n")
    put(root, "tab\there.csv", b"4\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("not for landing")
    (root / "inbox" / "escape.csv").symlink_to(secret)  # a link pointing outside the inbox is not followed
    (root / "inbox" / "up.csv").symlink_to("../archive")
    with pytest.raises(Exception, match=r"(?s)evil\\nname\.csv.*control characters.*tab\\there\.csv"):
        land(dataset, end=end)
    names = sorted(f["key"].removeprefix(prefix(dataset, end)) for f in manifest(s3, dataset, end)["files"])
    assert names == ["données_été_東京.csv", "report with spaces.csv"]
    assert (root / "inbox" / "evil\nname.csv").exists()


def test_openssh_transport_with_an_inline_key_lands_and_leaves_no_key_on_disk(root, s3, sshd, dataset, end,
                                                                               monkeypatch, caplog):
    """A key given inline in the connection (as a secrets backend would) is written to a private
    temporary file for ``ssh`` and removed after the run; the host key stays pinned."""
    import logging
    import tempfile

    conn = json.loads(os.environ["AIRFLOW_CONN_SFTP_PARTNER"])
    conn["extra"]["private_key"] = Path(conn["extra"].pop("key_file")).read_text()
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_INLINE", json.dumps(conn))
    before = set(Path(tempfile.gettempdir()).glob("s3lander-ssh-*"))
    data = os.urandom(3 << 20)
    put(root, "inline.bin", data)
    with caplog.at_level(logging.INFO, logger="s3lander.hooks.sftp_fast"):
        assert land(dataset, end=end, conn_id="sftp_inline", post_action="leave")["landed"] == 1
    assert "over the openssh transport" in caplog.text
    assert body(s3, prefix(dataset, end) + "inline.bin") == data
    assert set(Path(tempfile.gettempdir()).glob("s3lander-ssh-*")) == before
