"""An SFTP session carried by the OpenSSH client (``ssh -s sftp``), spoken by asyncssh's SFTP client.

Why: on a busy 2-core worker the SSH layer in Python (asyncssh: packet framing, decryption
calls, window updates for every 32 KiB packet) cost ~5.8 CPU s per GiB read, more than the
whole rest of the landing. OpenSSH's ``sftp`` does what this module does: it runs ``ssh``
and speaks SFTP over its stdin/stdout. Here ``ssh`` decrypts in C, in its own process (so on
another core), and Python handles only SFTP replies of 255 KiB each: ~3.3 CPU s per GiB
including ``ssh`` itself, and the read of 1 GiB as fast as OpenSSH's own ``sftp`` client
(``bench/bench_sftp.py``, docs/sftp.md).

Everything above the transport stays asyncssh's ``SFTPClient`` (open, read, stat, scandir,
rename, remove), so both transports behave alike. Only the byte pipe differs: asyncssh's
SFTP handler reads with ``readexactly`` and writes with ``write``, which :class:`SshPipe`
provides over the ``ssh`` process, copying each received byte once.

Security is OpenSSH's own: ``StrictHostKeyChecking=yes`` against the connection's pinned
``host_key`` (written to a private temporary known_hosts file) or its ``known_hosts`` file,
nothing learnt or updated, ``-F /dev/null`` so no user config or agent takes part, batch
mode (never a prompt). Key auth only: a connection with a password or a key passphrase
uses the asyncssh transport (see :func:`unusable_reason`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncssh

    from s3lander.hooks.sftp_fast import SshTarget

log = logging.getLogger(__name__)

#: the ``ssh`` pipe to us is widened to this (Linux ``F_SETPIPE_SZ``): fewer wake-ups per 255 KiB reply
PIPE_SIZE = 1 << 20
#: at most this many received bytes wait in Python before ``ssh``'s pipe is paused
HIGH_WATER = 4 << 20
F_SETPIPE_SZ = 1031
#: lines of ``ssh``'s stderr kept for error messages
STDERR_LINES = 20


def ssh_binary() -> str | None:
    return shutil.which("ssh")


def unusable_reason(target: SshTarget) -> str | None:
    """Why the OpenSSH transport cannot serve ``target`` (None when it can)."""
    if ssh_binary() is None:
        return "no ssh client (OpenSSH) on PATH"
    if target.password:
        return "password auth (the OpenSSH transport runs in batch mode, keys only)"
    if target.passphrase:
        return "the private key has a passphrase"
    if not (target.key_file or target.private_key):
        return "the connection has no private key"
    return None


def _config_value(value: str) -> str:
    """An ``-o`` value for ssh's config parser: ``%`` tokens escaped, quoted when it has whitespace."""
    if '"' in value or "\n" in value:
        raise ValueError(f"unsupported character in ssh option value {value!r}")
    value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def ssh_argv(target: SshTarget, *, known_hosts: str, identity: str) -> list[str]:
    """The ``ssh`` command line of one SFTP session (pure: tested without a server)."""
    opts = {
        "BatchMode": "yes", "ConnectionAttempts": "1", "ConnectTimeout": str(max(1, int(target.connect_timeout))),
        "ServerAliveInterval": str(max(1, int(target.keepalive_seconds))), "ServerAliveCountMax": "3",
        "Compression": "no", "Ciphers": ",".join(target.ciphers), "IdentitiesOnly": "yes", "IdentityAgent": "none",
        "IdentityFile": _config_value(identity), "PreferredAuthentications": "publickey",
        "PasswordAuthentication": "no", "KbdInteractiveAuthentication": "no", "ForwardAgent": "no",
        "ForwardX11": "no", "ClearAllForwardings": "yes", "RequestTTY": "no", "CheckHostIP": "no",
        "UpdateHostKeys": "no", "HashKnownHosts": "no", "GlobalKnownHostsFile": "/dev/null",
        "UserKnownHostsFile": _config_value(known_hosts), "LogLevel": "ERROR",
    }
    if target.verify_host_key:
        opts["StrictHostKeyChecking"] = "yes"
    else:
        opts["StrictHostKeyChecking"] = "no"
    argv = [ssh_binary() or "ssh", "-F", "/dev/null", "-p", str(target.port)]
    for k, v in opts.items():
        argv += ["-o", f"{k}={v}"]
    if target.username:
        argv += ["-l", target.username]
    return [*argv, "-s", "--", target.host, "sftp"]


def ssh_command(target: SshTarget) -> tuple[str, list[str]]:
    """A private temporary folder (mode 0700) and the ``ssh`` command line of one session.

    The folder holds what ssh must read from files: the pinned host key as a known_hosts
    line, and an inline private key. The caller removes it when the session ends."""
    folder = tempfile.mkdtemp(prefix="s3lander-ssh-")
    if not target.verify_host_key:
        known = "/dev/null"
    elif target.host_key:
        known = os.path.join(folder, "known_hosts")
        _write_private(known, target.known_hosts_line())
    else:
        known = target.known_hosts_path()
    if target.private_key:
        identity = os.path.join(folder, "id")
        key = target.private_key if target.private_key.endswith("\n") else target.private_key + "\n"
        _write_private(identity, key)
    else:
        identity = os.path.expanduser(target.key_file or "")
    return folder, ssh_argv(target, known_hosts=known, identity=identity)


class SshPipe(asyncio.SubprocessProtocol):
    """The ``ssh`` process as the byte stream asyncssh's SFTP handler reads and writes.

    Received bytes are kept as the chunks the pipe gave and cut into the exact lengths
    ``readexactly`` asks for: one copy at most (none when a reply sits inside one chunk).
    At most :data:`HIGH_WATER` bytes wait here; beyond that the pipe is paused, so a slow
    consumer holds ``ssh`` (and the server) back instead of filling memory.
    """

    def __init__(self) -> None:
        from asyncssh.logging import logger

        self.logger = logger.get_child("openssh")
        self._chunks: deque[bytes] = deque()
        self._head = 0  # bytes of _chunks[0] already handed out
        self._size = 0
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._paused = False
        self._transport: asyncio.SubprocessTransport | None = None
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        #: ssh's exit code, once it has exited and its pipes are closed
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.channel = _Channel(self)

    # --- protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        out = transport.get_pipe_transport(1)  # type: ignore[attr-defined]
        pipe = out.get_extra_info("pipe") if out is not None else None
        if pipe is not None:
            with contextlib.suppress(OSError, ValueError):
                import fcntl

                fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd == 2:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            self.stderr.extend(line for line in text.splitlines() if line.strip())
            return
        self._chunks.append(bytes(data) if not isinstance(data, bytes) else data)
        self._size += len(data)
        if self._size >= self._want:
            self._wake()
        if self._size > HIGH_WATER and not self._paused:
            self._pause(True)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._eof = True
            self._wake()

    def process_exited(self) -> None:
        self._eof = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        """ssh has exited and every pipe is drained (its last stderr words included)."""
        self._eof = True
        self._wake()
        if not self.exited.done():
            code = self._transport.get_returncode() if self._transport is not None else None
            self.exited.set_result(-1 if code is None else code)

    # --- what asyncssh's SFTP handler uses ------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # e.g. server_version: ssh does not tell us (only used for old SYMLINK quirks)

    async def readexactly(self, n: int) -> bytes:
        while self._size < n:
            if self._eof:
                raise asyncio.IncompleteReadError(self._take(self._size), n)
            if self._paused:
                self._pause(False)
            self._want = n
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._take(n)
        if self._paused and self._size <= HIGH_WATER // 2:
            self._pause(False)
        return data

    def write(self, data: bytes) -> None:
        stdin = self._stdin()
        if stdin is not None and not stdin.is_closing():
            stdin.write(data)

    def write_eof(self) -> None:
        stdin = self._stdin()
        if stdin is not None and not stdin.is_closing():
            stdin.write_eof()

    def close(self) -> None:
        stdin = self._stdin()
        if stdin is not None:
            stdin.close()

    # --- internals ------------------------------------------------------------------------
    def _stdin(self) -> asyncio.WriteTransport | None:
        return self._transport.get_pipe_transport(0) if self._transport is not None else None  # type: ignore[return-value]

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _pause(self, pause: bool) -> None:
        out = self._transport.get_pipe_transport(1) if self._transport is not None else None
        if out is None:
            return
        self._paused = pause
        (out.pause_reading if pause else out.resume_reading)()  # type: ignore[attr-defined]

    def _take(self, n: int) -> bytes:
        chunks, head = self._chunks, self._head
        if not n:
            return b""
        first = chunks[0]
        if len(first) - head >= n:  # the common case: the reply lies inside one chunk
            out = first if head == 0 and n == len(first) else first[head:head + n]
            head += n
            if head == len(first):
                chunks.popleft()
                head = 0
        else:
            parts: list[memoryview] = []
            need = n
            while need:
                c = chunks[0]
                avail = len(c) - head
                if avail <= need:
                    parts.append(memoryview(c)[head:])
                    chunks.popleft()
                    head, need = 0, need - avail
                else:
                    parts.append(memoryview(c)[head:head + need])
                    head, need = head + need, 0
            out = b"".join(parts)
        self._head = head
        self._size -= n
        return out


class _Channel:
    """The little of an SSH channel that asyncssh's SFTP handler asks of its writer."""

    def __init__(self, pipe: SshPipe) -> None:
        self._pipe = pipe

    def is_closing(self) -> bool:
        stdin = self._pipe._stdin()
        return self._pipe.exited.done() or stdin is None or stdin.is_closing()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._pipe.exited)


class OpenSshSession:
    """One ``ssh -s sftp`` process and the asyncssh ``SFTPClient`` speaking over it."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.sftp: asyncssh.SFTPClient | None = None
        self._dir: str | None = None
        self._transport: asyncio.SubprocessTransport | None = None
        self._pipe: SshPipe | None = None
        self._recv: asyncio.Task[None] | None = None

    async def open(self) -> asyncssh.SFTPClient:
        from asyncssh import Error as AsyncSshError
        from asyncssh.sftp import MIN_SFTP_VERSION, SFTPClient, SFTPClientHandler

        self._dir, argv = ssh_command(self.target)
        loop = asyncio.get_running_loop()
        self._transport, self._pipe = await loop.subprocess_exec(
            SshPipe, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        pipe = self._pipe
        handler = SFTPClientHandler(loop, "strict", pipe, pipe, MIN_SFTP_VERSION)  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(handler.start(), self.target.connect_timeout + 15)
        except (AsyncSshError, EOFError, OSError, TimeoutError) as e:  # ssh exited before the SFTP hello
            failure = await self._failure(e)
            await self.close()
            raise failure from None
        self._recv = loop.create_task(handler.recv_packets())
        await handler.request_limits()
        self.sftp = SFTPClient(handler, "utf-8", "strict")
        return self.sftp

    async def _failure(self, exc: BaseException) -> Exception:
        """ssh's own words, turned into the errors the asyncssh transport raises."""
        from s3lander.hooks.sftp_fast import HostKeyError, SftpError, presented_host_key

        t = self.target
        if self._pipe is not None:  # ssh has exited or is about to: let its last words arrive
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pipe.exited), 5)
        said = " | ".join(self._pipe.stderr) if self._pipe is not None else ""
        if "Host key verification failed" in said or "HOST IDENTIFICATION HAS CHANGED" in said:
            return HostKeyError(t.host_key_refusal(await presented_host_key(t), said))
        if "Permission denied" in said:
            return SftpError(f"SFTP login to {t.address} as {t.username!r} (connection {t.conn_id!r}) "
                             f"was refused: {said}")
        return SftpError(f"cannot connect to SFTP server {t.address} (connection {t.conn_id!r}): "
                         f"{said or type(exc).__name__ + ': ' + str(exc)}")

    async def close(self) -> None:
        if self.sftp is not None:
            self.sftp.exit()  # EOF on ssh's stdin: ssh closes the channel and exits
        pipe, transport = self._pipe, self._transport
        if pipe is not None and transport is not None:
            try:
                await asyncio.wait_for(asyncio.shield(pipe.exited), 5)
            except TimeoutError:
                transport.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pipe.exited), 5)
            transport.close()
        if self._recv is not None:
            self._recv.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recv
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self.sftp = self._pipe = self._transport = self._recv = None
        self._dir = None


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
