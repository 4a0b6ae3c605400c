"""The OpenSSH transport without a server: command line, transport choice, and the reply framing."""

from __future__ import annotations

import asyncio
import types

import pytest

from s3lander.hooks import sftp_openssh
from s3lander.hooks.sftp_fast import SftpError, SshTarget, choose_transport
from s3lander.hooks.sftp_openssh import HIGH_WATER, SshPipe, ssh_argv, unusable_reason


def conn(password=None, **extra):
    return types.SimpleNamespace(conn_id="p", host="10.0.0.5", port=2222, login="u", password=password,
                                 extra_dejson=extra)


def options(argv: list[str]) -> dict[str, str]:
    out = {}
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-o":
            k, v = value.split("=", 1)
            out[k] = v
    return out


def test_command_line_verifies_the_host_key_and_never_prompts():
    t = SshTarget.from_connection(conn(key_file="/k/id"))
    argv = ssh_argv(t, known_hosts="/etc/kh", identity="/k/id")
    o = options(argv)
    assert argv[1:3] == ["-F", "/dev/null"]  # no user config, no agent from it
    assert o["StrictHostKeyChecking"] == "yes" and o["UserKnownHostsFile"] == "/etc/kh"
    assert o["GlobalKnownHostsFile"] == "/dev/null" and o["UpdateHostKeys"] == "no"
    assert o["BatchMode"] == "yes" and o["PasswordAuthentication"] == "no" and o["IdentitiesOnly"] == "yes"
    assert o["IdentityAgent"] == "none" and o["Compression"] == "no"
    assert o["Ciphers"].split(",")[0] == "aes128-gcm@openssh.com"
    assert argv[-4:] == ["-s", "--", "10.0.0.5", "sftp"]  # the host can never be read as an option
    assert argv[argv.index("-l") + 1] == "u" and argv[argv.index("-p") + 1] == "2222"


def test_command_line_quotes_paths_and_escapes_tokens():
    t = SshTarget.from_connection(conn(key_file="/k/id"))
    o = options(ssh_argv(t, known_hosts="/my keys/known_%h", identity="/k/id 1"))
    assert o["UserKnownHostsFile"] == '"/my keys/known_%%h"' and o["IdentityFile"] == '"/k/id 1"'
    with pytest.raises(ValueError, match="unsupported character"):
        ssh_argv(t, known_hosts='/a"b', identity="/k/id")


def test_unverified_only_when_asked():
    t = SshTarget.from_connection(conn(key_file="/k/id", no_host_key_check="true"))
    assert options(ssh_argv(t, known_hosts="/dev/null", identity="/k/id"))["StrictHostKeyChecking"] == "no"


def test_transport_choice(monkeypatch):
    monkeypatch.setattr(sftp_openssh, "ssh_binary", lambda: "/usr/bin/ssh")
    assert choose_transport(SshTarget.from_connection(conn(key_file="/k/id"))) == "openssh"
    assert choose_transport(SshTarget.from_connection(conn(private_key="KEY"))) == "openssh"
    assert choose_transport(SshTarget.from_connection(conn(key_file="/k/id", transport="asyncssh"))) == "asyncssh"
    pw = SshTarget.from_connection(conn(password="pw"))  # noqa: S106 - a test value
    assert "password" in unusable_reason(pw) and choose_transport(pw) == "asyncssh"
    phrase = SshTarget.from_connection(conn(key_file="/k/id", private_key_passphrase="x"))
    assert choose_transport(phrase) == "asyncssh"
    forced = SshTarget.from_connection(conn(password="pw", transport="openssh"))  # noqa: S106
    with pytest.raises(SftpError, match="connection 'p' asks for transport 'openssh'.*password"):
        choose_transport(forced)
    monkeypatch.setattr(sftp_openssh, "ssh_binary", lambda: None)
    assert "no ssh client" in unusable_reason(SshTarget.from_connection(conn(key_file="/k/id")))
    assert choose_transport(SshTarget.from_connection(conn(key_file="/k/id"))) == "asyncssh"


def test_unknown_transport_names_the_connection():
    with pytest.raises(SftpError, match="connection 'p': extra.transport 'scp' is not one of"):
        SshTarget.from_connection(conn(key_file="/k/id", transport="scp"))


def test_pinned_key_becomes_a_known_hosts_line():
    t = SshTarget.from_connection(conn(host_key="AAAAC3Nz"))
    assert t.known_hosts_line() == "[10.0.0.5]:2222 ssh-ed25519 AAAAC3Nz\n"


class FakeSubprocess:
    """The parts of a subprocess transport SshPipe touches: stdout pause/resume, stdin writes."""

    def __init__(self) -> None:
        self.paused = False
        self.written: list[bytes] = []
        outer = self

        class Out:
            def pause_reading(self) -> None:
                outer.paused = True

            def resume_reading(self) -> None:
                outer.paused = False

            def get_extra_info(self, name, default=None):
                return default

        class In:
            def write(self, data: bytes) -> None:
                outer.written.append(data)

            def is_closing(self) -> bool:
                return False

        self._pipes = {0: In(), 1: Out()}

    def get_pipe_transport(self, fd: int):
        return self._pipes[fd]

    def get_returncode(self) -> int:
        return 255


def test_replies_are_cut_exactly_whatever_the_chunking():
    async def main() -> None:
        pipe = SshPipe()
        pipe.connection_made(FakeSubprocess())
        stream = b"".join(len(p).to_bytes(4, "big") + p for p in (b"a" * 10, b"b" * 300_000, b"", b"c" * 7))
        cuts = [0, 1, 3, 4, 17, 65_536, 200_001, len(stream)]
        for a, b in zip(cuts, cuts[1:], strict=False):
            pipe.pipe_data_received(1, stream[a:b])
        got = []
        for _ in range(4):
            n = int.from_bytes(await pipe.readexactly(4), "big")
            got.append(await pipe.readexactly(n))
        assert got == [b"a" * 10, b"b" * 300_000, b"", b"c" * 7]

    asyncio.run(main())


def test_a_read_waits_for_data_and_fails_cleanly_at_eof():
    async def main() -> None:
        pipe = SshPipe()
        pipe.connection_made(FakeSubprocess())
        reader = asyncio.ensure_future(pipe.readexactly(6))
        await asyncio.sleep(0)
        assert not reader.done()
        pipe.pipe_data_received(1, b"abc")
        await asyncio.sleep(0)
        assert not reader.done()
        pipe.pipe_data_received(1, b"defg")
        assert await reader == b"abcdef"
        pipe.pipe_data_received(2, b"Connection to 10.0.0.5 closed by remote host.\r\n")
        pipe.pipe_connection_lost(1, None)
        with pytest.raises(asyncio.IncompleteReadError) as e:
            await pipe.readexactly(4)
        assert e.value.partial == b"g"
        pipe.connection_lost(None)
        assert await pipe.exited == 255
        assert list(pipe.stderr) == ["Connection to 10.0.0.5 closed by remote host."]

    asyncio.run(main())


def test_a_slow_reader_pauses_ssh_instead_of_buffering_without_bound():
    async def main() -> None:
        proc = FakeSubprocess()
        pipe = SshPipe()
        pipe.connection_made(proc)
        block = b"x" * (1 << 20)
        for _ in range(HIGH_WATER // len(block) + 1):
            pipe.pipe_data_received(1, block)
        assert proc.paused  # more than HIGH_WATER waiting: stop reading ssh's stdout
        while pipe._size > HIGH_WATER // 2:
            await pipe.readexactly(len(block))
        assert not proc.paused  # drained to half: reading resumes
        pipe.write(b"req")
        assert proc.written == [b"req"]

    asyncio.run(main())
