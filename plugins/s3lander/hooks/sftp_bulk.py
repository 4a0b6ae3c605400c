"""Bulk reads of large files: SFTP spoken with blocking I/O on an ``ssh -s sftp`` pipe, in one thread.

Why: over the OpenSSH transport, asyncssh's SFTP client costs ~1.9 CPU s to read 1 GiB and
hash it, most of it outside the hash: an event-loop wake-up, a future and a task per 255 KiB
reply, and two copies of every byte (the pipe's chunks joined into a packet, the packet
sliced into the reply's data). On a small worker that also runs the S3 client and ``ssh``,
CPU is the scarce resource. A thread that sends the READ requests itself and reads each
reply's bytes off the pipe into the ``bytes`` it hands on does the same work in ~1.0 CPU s
(SHA-256 included: 0.6 s; ``getrusage`` around 1 GiB reads, docs/sftp.md), and keeps no
reply buffers beyond the pipe's (peak RSS ~20 MB lower).

A :class:`BulkSession` is its own ``ssh`` process (the same command line, host-key checks
and options as :class:`~s3lander.hooks.sftp_openssh.OpenSshSession`), used by one thread
at a time, reused for the next large file, and closed with its pool. It speaks only the
packets of a read (:mod:`s3lander.sftp.protocol`); listing, sidecars and post-actions stay
on the pool's asyncssh sessions.

Liveness: ssh runs with ``ServerAliveInterval`` / ``ServerAliveCountMax``, so a server
that stops answering makes ssh exit, and a blocked read here then ends with EOF.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import shutil
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from s3lander.hooks.sftp_openssh import F_SETPIPE_SZ, PIPE_SIZE, ssh_command
from s3lander.sftp import protocol as p

if TYPE_CHECKING:
    from s3lander.hooks.sftp_fast import Fetched, SshTarget

log = logging.getLogger(__name__)

#: SFTP read size (OpenSSH's limit) and reads in flight: the asyncssh path's measured choice
BLOCK_SIZE = 255 * 1024
MAX_REQUESTS = 32
#: a control reply (VERSION, HANDLE, STATUS, ATTRS) larger than this is a protocol error
MAX_CONTROL_REPLY = 256 * 1024


class BulkSession:
    """One ``ssh -s sftp`` process, read and written with blocking calls by one thread at a time.

    After any failure the session is ``broken`` (replies may still be in flight): the pool
    closes it instead of reusing it.
    """

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.broken = True  # until open() has shaken hands
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._rfd = self._wfd = -1
        self._next_id = 1

    # --- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Start ssh and shake hands (SFTP version 3); SftpError with ssh's words if it fails."""
        from s3lander.hooks.sftp_fast import SftpError

        self._dir, argv = ssh_command(self.target)
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      bufsize=0, start_new_session=True)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._rfd, self._wfd = self._proc.stdout.fileno(), self._proc.stdin.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._rfd, F_SETPIPE_SZ, PIPE_SIZE)
        try:
            self._send(p.init_packet())
            wait = self.target.connect_timeout + 15
            (length,) = p.U32.unpack(self._recv_exact(4, timeout=wait))
            body = self._recv_exact(self._control_length(length + 4) - 4, timeout=wait)
            if not body or body[0] != p.VERSION:
                raise p.ProtocolError(f"expected VERSION, got packet type {body[0] if body else None}")
            if p.parse_version(body[1:]) < 3:
                raise p.ProtocolError("the server speaks an SFTP version older than 3")
        except (OSError, EOFError, TimeoutError, p.ProtocolError) as e:
            said = self._stderr()
            self.close()
            raise SftpError(f"cannot open a bulk SFTP session to {self.target.address} (connection "
                            f"{self.target.conn_id!r}): {said or type(e).__name__ + ': ' + str(e)}") from None
        self.broken = False

    def kill(self) -> None:
        """Stop ssh at once, from any thread: a read blocked on its pipe then ends with EOF."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()

    def close(self) -> None:
        """End the session (EOF on ssh's stdin), kill ssh if it does not exit, remove its files."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.broken = True

    # --- the read -------------------------------------------------------------------------
    def read(self, path: str, consume: Callable[[bytes], Any], *, md5: bool = False, sha256: bool = True,
             expected_size: int | None = None, block_size: int = BLOCK_SIZE,
             max_requests: int = MAX_REQUESTS) -> Fetched:
        """Stream the remote file ``path`` into ``consume`` in file order, hashing on the way.

        The same contract as :func:`s3lander.hooks.sftp_fast.fetch`: no read past
        ``expected_size``, a short reply completed before anything later, an empty one or EOF
        ends the file, and the open handle is stat'ed after the last byte so a file that
        changed while it was read is detected. ``consume`` gets each piece of a reply as it
        came off the pipe (no copy here) and is called on this thread.
        """
        from s3lander.hooks.sftp_fast import Digests, SftpError

        if self.broken or self._proc is None:
            raise SftpError(f"bulk SFTP session to {self.target.address} is not open")
        self.broken = True  # until the read has ended cleanly
        digests = Digests(sha256=sha256, md5=md5)
        try:
            handle = self._open_file(path)
            plan = p.ReadPlan(block_size=block_size, max_requests=max_requests, expected_size=expected_size,
                              first_id=self._next_id)

            def take(data: bytes) -> None:
                digests.update(data)
                consume(data)

            self._read_all(path, handle, plan, take)
            self._next_id = plan.next_id
            attrs = self._fstat(path, handle)
            self._close_file(path, handle)
        except (OSError, EOFError, p.ProtocolError) as e:
            said = self._stderr() if self._exited() else ""
            raise SftpError(f"SFTP read of {path!r} from {self.target.address} (connection {self.target.conn_id!r}) "
                            f"failed after {digests.bytes} bytes: {said or type(e).__name__ + ': ' + str(e)}") from e
        self.broken = False
        return digests.fetched(size_after=int(attrs.size or 0), mtime_after=float(attrs.mtime or 0))

    def _read_all(self, path: str, handle: bytes, plan: p.ReadPlan, take: Callable[[bytes], Any]) -> None:
        """Keep ``plan``'s requests in flight and hand the head reply's bytes on as they arrive.

        Replies that overtake the head (a server may answer out of order) wait in ``early``;
        at most ``max_requests`` of them, so memory stays bounded."""
        early: dict[int, tuple[int, list[bytes] | bytes]] = {}
        self._send_reads(handle, plan.fill())
        while (head := plan.head()) is not None:
            if head.id in early:
                kind, body = early.pop(head.id)
                if kind == p.DATA:
                    n = sum(len(c) for c in body)
                    for c in body:
                        take(c)  # type: ignore[arg-type]
                    self._after_data(handle, plan, early, n)
                elif kind == p.STATUS:
                    self._after_status(path, plan, early, body)  # type: ignore[arg-type]
                else:
                    raise p.ProtocolError(f"packet type {kind} in answer to READ")
                continue
            length, kind, rid = p.HEAD.unpack(self._recv_exact(p.HEAD.size))
            if not any(r.id == rid for r in plan.inflight):
                raise p.ProtocolError(f"reply to request {rid}, which is not in flight")
            if rid != head.id:
                early[rid] = self._reply_body(kind, length)
                continue
            if kind == p.DATA:
                (n,) = p.U32.unpack(self._recv_exact(4))
                if n > head.length:
                    raise p.ProtocolError(f"{n} bytes in answer to a read of {head.length}")
                self._recv_into(n, take)
                self._after_data(handle, plan, early, n)
            elif kind == p.STATUS:
                self._after_status(path, plan, early, self._recv_exact(self._control_length(length) - 5))
            else:
                raise p.ProtocolError(f"packet type {kind} in answer to READ")

    def _after_data(self, handle: bytes, plan: p.ReadPlan, early: dict[int, Any], n: int) -> None:
        if n == 0:  # an empty answer ends the file, as EOF does
            self._end_of_file(plan, early)
            return
        rest = plan.got(n)
        if rest is not None:
            self._send_reads(handle, [rest])
        self._send_reads(handle, plan.fill())

    def _after_status(self, path: str, plan: p.ReadPlan, early: dict[int, Any], rest: bytes) -> None:
        from s3lander.hooks.sftp_fast import SftpError

        status = p.parse_status(rest)
        if status.code != p.FX_EOF:
            raise SftpError(f"SFTP read of {path!r} from {self.target.address} (connection "
                            f"{self.target.conn_id!r}) failed: {status.describe()}")
        self._end_of_file(plan, early)

    def _end_of_file(self, plan: p.ReadPlan, early: dict[int, Any]) -> None:
        """The file ended before the listed size: receive (and drop) the replies still in flight."""
        waiting = {r.id for r in plan.end_of_file()} - set(early)
        early.clear()
        while waiting:
            length, kind, rid = p.HEAD.unpack(self._recv_exact(p.HEAD.size))
            if rid not in waiting:
                raise p.ProtocolError(f"reply to request {rid}, which is not in flight")
            waiting.discard(rid)
            self._reply_body(kind, length)

    def _send_reads(self, handle: bytes, requests: list[p.Request]) -> None:
        if requests:
            self._send(b"".join(p.read_packet(r.id, handle, r.offset, r.length) for r in requests))

    def _reply_body(self, kind: int, length: int) -> tuple[int, list[bytes] | bytes]:
        """The rest of a reply whose head was read: DATA as its pieces, anything else whole."""
        if kind == p.DATA:
            (n,) = p.U32.unpack(self._recv_exact(4))
            pieces: list[bytes] = []
            self._recv_into(n, pieces.append)
            return kind, pieces
        return kind, self._recv_exact(self._control_length(length) - 5)

    # --- control requests -----------------------------------------------------------------
    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id = (rid + 1) & 0xFFFFFFFF
        return rid

    def _call(self, packet: Callable[[int], bytes], expect: int) -> tuple[int, bytes]:
        """Send one control request and read its reply: (type, body after the request id)."""
        rid = self._new_id()
        self._send(packet(rid))
        length, kind, got = p.HEAD.unpack(self._recv_exact(p.HEAD.size))
        body = self._recv_exact(self._control_length(length) - 5)
        if got != rid:
            raise p.ProtocolError(f"reply to request {got} while waiting for {rid}")
        if kind not in (expect, p.STATUS):
            raise p.ProtocolError(f"packet type {kind} where {expect} or STATUS was expected")
        return kind, body

    def _open_file(self, path: str) -> bytes:
        from s3lander.hooks.sftp_fast import SftpError

        kind, body = self._call(lambda rid: p.open_packet(rid, path.encode("utf-8", "surrogateescape")), p.HANDLE)
        if kind == p.STATUS:
            raise SftpError(f"cannot open {path!r} on {self.target.address} (connection {self.target.conn_id!r}): "
                            f"{p.parse_status(body).describe()}")
        return p.parse_handle(body)

    def _fstat(self, path: str, handle: bytes) -> p.Attrs:
        from s3lander.hooks.sftp_fast import SftpError

        kind, body = self._call(lambda rid: p.fstat_packet(rid, handle), p.ATTRS)
        if kind == p.STATUS:
            raise SftpError(f"cannot stat {path!r} after reading it: {p.parse_status(body).describe()}")
        return p.parse_attrs(body)

    def _close_file(self, path: str, handle: bytes) -> None:
        kind, body = self._call(lambda rid: p.close_packet(rid, handle), p.STATUS)
        status = p.parse_status(body)
        if status.code != p.FX_OK:
            log.warning("closing %s on %s: %s", path, self.target.address, status.describe())

    # --- bytes on the pipes ---------------------------------------------------------------
    @staticmethod
    def _control_length(length: int) -> int:
        if length < 5 or length > MAX_CONTROL_REPLY:
            raise p.ProtocolError(f"reply of {length} bytes")
        return length

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._wfd, view):]

    def _recv_exact(self, n: int, *, timeout: float | None = None) -> bytes:
        pieces: list[bytes] = []
        self._recv_into(n, pieces.append, timeout=timeout)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _recv_into(self, n: int, take: Callable[[bytes], Any], *, timeout: float | None = None) -> None:
        """Read exactly ``n`` bytes, handing each piece the pipe gives to ``take``."""
        while n > 0:
            if timeout is not None and not _readable(self._rfd, timeout):
                raise TimeoutError(f"no answer from ssh within {timeout:.0f} s")
            piece = os.read(self._rfd, n)
            if not piece:
                raise EOFError("the SSH connection closed")
            take(piece)
            n -= len(piece)

    def _exited(self) -> bool:
        if self._proc is None:
            return True
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(2)
        return self._proc.returncode is not None

    def _stderr(self) -> str:
        """ssh's last words (only once it has exited: the read must not block)."""
        proc = self._proc
        if proc is None or proc.stderr is None or not self._exited():
            return ""
        with contextlib.suppress(OSError, ValueError):
            text = proc.stderr.read(64 * 1024).decode("utf-8", "replace")
            return " | ".join(line for line in text.splitlines() if line.strip())[-2000:]
        return ""


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has bytes (or EOF) within ``timeout`` s (poll: no FD_SETSIZE limit, unlike select)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))
