"""FastSftpHook's connection handling without a server: auth options and host-key trust."""

from __future__ import annotations

import types

import pytest

from s3lander.hooks.sftp_fast import HostKeyError, SshTarget

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO2okXNC3RaIj2XPGbAxSliR5b7CYQyTRG7TvxVEQMTa"


def conn(**extra):
    return types.SimpleNamespace(conn_id="p", host="10.0.0.5", port=2222, login="u", password=None, extra_dejson=extra)


def test_pinned_host_key_is_the_only_trusted_key():
    t = SshTarget.from_connection(conn(host_key=KEY))
    kh = t.known_hosts_arg()
    trusted = kh.match("10.0.0.5", "10.0.0.5", 2222)[0]
    import asyncssh

    assert {k.get_fingerprint() for k in trusted} == {asyncssh.import_public_key(KEY).get_fingerprint()}
    assert "pinned" in t.trust_source()


def test_verification_is_on_by_default_and_fails_without_known_hosts(tmp_path):
    t = SshTarget.from_connection(conn(known_hosts=str(tmp_path / "missing")))
    assert t.verify_host_key
    with pytest.raises(HostKeyError, match="connection 'p'.*known_hosts file .*missing does not exist"):
        t.known_hosts_arg()


def test_no_host_key_check_turns_verification_off_explicitly():
    t = SshTarget.from_connection(conn(no_host_key_check="true"))
    assert t.known_hosts_arg() is None


def test_compression_off_and_password_kept_out_of_repr():
    c = conn(host_key=KEY)
    c.password = "s3cret!"
    t = SshTarget.from_connection(c)
    opts = t.options()
    assert opts["compression_algs"] is None and opts["password"] == "s3cret!"
    assert "s3cret" not in repr(t)
    assert opts["encryption_algs"][0] == "aes128-gcm@openssh.com"


class FakeRemoteFile:
    """An SFTP file whose replies come back out of order and sometimes short (as servers may)."""

    def __init__(self, data: bytes, *, seed: int, short_every: int = 3, shrink_to: int | None = None) -> None:
        import random

        self.data, self.rng, self.short_every = data, random.Random(seed), short_every
        self.shrink_to, self.calls = shrink_to, 0
        self.requests: list[tuple[int, int]] = []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    async def read(self, size: int, offset: int) -> bytes:
        import asyncio

        self.requests.append((offset, size))
        self.calls += 1
        await asyncio.sleep(self.rng.random() / 1000)  # replies complete in any order
        data = self.data if self.shrink_to is None else self.data[:self.shrink_to]
        n = size if self.calls % self.short_every else max(1, size // 3)  # every k-th reply is short
        return data[offset:offset + n]

    async def stat(self):
        size = len(self.data) if self.shrink_to is None else self.shrink_to
        return types.SimpleNamespace(size=size, mtime=100)


class FakeSftp:
    def __init__(self, f: FakeRemoteFile) -> None:
        self.f = f

    def open(self, path: str, mode: str, **kwargs):
        assert kwargs.get("block_size") == 0  # one request per read(), replies as received
        return self.f


@pytest.mark.parametrize("size,expected", [(0, 0), (1, 1), (1000, 1000), (5 * 1024 * 1024 + 7, None)])
def test_fetch_hands_on_every_byte_in_order_despite_short_and_unordered_replies(size, expected):
    import asyncio
    import hashlib
    import os
    from concurrent.futures import ThreadPoolExecutor

    from s3lander.hooks.sftp_fast import fetch

    data = os.urandom(size)
    f = FakeRemoteFile(data, seed=size)
    got: list[bytes] = []
    with ThreadPoolExecutor(2) as ex:
        out = asyncio.run(fetch(FakeSftp(f), "x", got.append, executor=ex, md5=True, expected_size=expected,
                                block_size=4096, max_requests=8, read_size=64 * 1024, inline_below=2000))
    assert b"".join(got) == data
    assert (out.bytes, out.sha256, out.md5) == (size, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())  # noqa: S324 - the sidecar algorithm
    assert not out.changed_since(types.SimpleNamespace(size=size, mtime=100))
    if expected is not None:  # nothing is asked past the listed size
        assert all(off + n <= expected for off, n in f.requests)


def test_fetch_of_a_file_that_shrank_ends_at_its_real_end_and_reports_the_change():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from s3lander.hooks.sftp_fast import fetch

    data = bytes(range(256)) * 400
    f = FakeRemoteFile(data, seed=1, shrink_to=30_000)
    got: list[bytes] = []
    with ThreadPoolExecutor(1) as ex:
        out = asyncio.run(fetch(FakeSftp(f), "x", got.append, executor=ex, expected_size=len(data),
                                block_size=4096, max_requests=4, read_size=8192))
    assert b"".join(got) == data[:30_000]
    assert out.changed_since(types.SimpleNamespace(size=len(data), mtime=100))


def test_fetch_failure_of_one_read_cancels_the_rest_and_raises():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from s3lander.hooks.sftp_fast import fetch

    class Failing(FakeRemoteFile):
        async def read(self, size: int, offset: int) -> bytes:
            if offset >= 8192:
                raise OSError("connection lost")
            return await super().read(size, offset)

    f = Failing(b"z" * 100_000, seed=2, short_every=10**9)
    with ThreadPoolExecutor(1) as ex, pytest.raises(OSError, match="connection lost"):
        asyncio.run(fetch(FakeSftp(f), "x", lambda d: None, executor=ex, expected_size=100_000,
                          block_size=4096, max_requests=4, read_size=8192))
