"""Bulk reads of large files against the real OpenSSH sshd: the session, and the pool's choice of it."""

from __future__ import annotations

import asyncio
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.sftp.conftest import put

pytestmark = pytest.mark.integration


def _ssh_processes_of(session) -> int | None:  # noqa: ANN001 - a BulkSession
    return session._proc.pid if session._proc is not None else None


def test_bulk_session_reads_real_files_verifies_them_and_is_reused(root: Path):
    from s3lander.hooks.sftp_bulk import BulkSession
    from s3lander.hooks.sftp_fast import FastSftpHook, SftpError

    big, small = os.urandom(3 * 1024 * 1024 + 17), "id,name\n1,ü é\n".encode()
    put(root, "d/big.bin", big)
    put(root, "d/ü é.csv", small)
    s = BulkSession(FastSftpHook("sftp_partner").target)
    s.open()
    try:
        out = bytearray()
        got = s.read("inbox/d/big.bin", out.extend, md5=True, expected_size=len(big))
        assert bytes(out) == big and got.bytes == len(big) == got.size_after
        assert got.sha256 == hashlib.sha256(big).hexdigest()
        assert got.md5 == hashlib.md5(big, usedforsecurity=False).hexdigest()
        assert got.mtime_after == int((root / "inbox" / "d" / "big.bin").stat().st_mtime)
        pid = _ssh_processes_of(s)
        out2 = bytearray()
        s.read("inbox/d/ü é.csv", out2.extend, expected_size=None)  # same ssh process, next file
        assert bytes(out2) == small and _ssh_processes_of(s) == pid
        with pytest.raises(SftpError, match=r"cannot open 'inbox/d/missing\.bin' .*no such file"):
            s.read("inbox/d/missing.bin", lambda d: None)
    finally:
        folder = s._dir
        s.close()
    assert folder is not None and not Path(folder).exists()  # its private key/known_hosts folder is gone


def test_pool_reads_large_files_over_a_bulk_session_and_small_ones_over_its_own(root: Path, monkeypatch):
    from s3lander.hooks import sftp_fast
    from s3lander.hooks.sftp_fast import FastSftpHook

    monkeypatch.setattr(sftp_fast, "BULK_MIN", 1 << 20)
    large, small = os.urandom(2 << 20), os.urandom(1000)
    put(root, "large.bin", large)
    put(root, "small.bin", small)

    async def run() -> tuple[bytes, bytes, int, int]:
        with ThreadPoolExecutor(2) as ex:
            async with FastSftpHook("sftp_partner").pool(1) as pool:
                assert pool.transport == "openssh"
                a, b = bytearray(), bytearray()
                await pool.fetch("inbox/small.bin", b.extend, executor=ex, expected_size=len(small))
                after_small = len(pool._bulk_idle)
                await pool.fetch("inbox/large.bin", a.extend, executor=ex, expected_size=len(large))
                return bytes(a), bytes(b), after_small, len(pool._bulk_idle)

    a, b, after_small, after_large = asyncio.run(run())
    assert a == large and b == small
    assert (after_small, after_large) == (0, 1)  # only the large file opened one, kept for the next
