"""FastSftpHook: a fast, verifying SFTP client for landing files into S3.

The SFTP side is asyncssh's ``SFTPClient`` (many read requests in flight per file, many
files multiplexed over one connection without a thread each, TCP_NODELAY). It runs over one
of two transports, chosen per connection (``extra.transport``: ``auto``, ``openssh`` or
``asyncssh``):

- ``openssh`` (``auto`` picks it for key auth when an ``ssh`` client is installed): the
  OpenSSH client process carries the session, as OpenSSH's own ``sftp`` does; encryption runs
  in C on another core (:mod:`s3lander.hooks.sftp_openssh`). Measured on 1 GiB: 3.3 CPU s
  per GiB read against 5.8 for asyncssh's Python SSH layer (``bench/bench_sftp.py``);
- ``asyncssh``: the whole SSH stack in-process; for password auth, keys with a passphrase,
  or hosts without an ``ssh`` client.

Over the OpenSSH transport, large files skip asyncssh's client: a bulk session reads them with
blocking I/O from one thread (:mod:`s3lander.hooks.sftp_bulk`, :meth:`SftpPool.fetch`).

Compression is always off (landing files are usually compressed already, and it costs CPU
three times over on random data).

Security: the server's host key is verified by default, against the connection's pinned
``host_key`` when it has one, else its ``known_hosts`` file, else ``~/.ssh/known_hosts``.
An unknown or changed key fails with :class:`HostKeyError` naming the host, the connection
and the fingerprint the server presented. Only ``no_host_key_check: true`` in the
connection's extra turns verification off, and that is logged as a warning on every connect.

Auth comes from the Airflow connection: ``password``, or ``extra.key_file`` /
``extra.private_key`` (with ``extra.private_key_passphrase``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import posixpath
import stat as stat_mod
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from s3lander.sftp.protocol import ReadPlan, Request
from s3lander.sftp.rules import RemoteFile

if TYPE_CHECKING:
    import asyncssh

    from s3lander.hooks.sftp_bulk import BulkSession

log = logging.getLogger(__name__)

#: replies are handed to the consumer thread in batches of this size; the next batch is read meanwhile
READ_SIZE = 4 * 1024 * 1024
#: SFTP read request size (OpenSSH's limit) and requests in flight per file: 8 MiB in flight keeps a
#: loopback link busy (64 gained nothing measurable and cost 8 MiB of peak RSS per file)
BLOCK_SIZE = 255 * 1024
MAX_REQUESTS = 32
#: files up to this size are hashed and buffered on the event loop (no thread hand-off)
INLINE_BELOW = 1024 * 1024
#: files of at least this size are read by a bulk session when the transport is OpenSSH
#: (:mod:`s3lander.hooks.sftp_bulk`: ~1 CPU s less per GiB; one more ``ssh`` per large file in flight)
BULK_MIN = 64 * 1024 * 1024
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                     "aes128-ctr", "aes256-ctr")


class SftpError(RuntimeError):
    """An SFTP operation failed; the message names the connection and the path."""


class HostKeyError(SftpError):
    """The server's host key is unknown or differs from the trusted one."""


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SshTarget:
    """Everything needed to open an SSH connection, resolved from an Airflow connection."""

    conn_id: str
    host: str
    port: int
    username: str | None
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    host_key: str | None = None
    known_hosts: str | None = None
    verify_host_key: bool = True
    ciphers: tuple[str, ...] = PREFERRED_CIPHERS
    connect_timeout: float = 30.0
    keepalive_seconds: float = 30.0
    transport: str = "auto"

    @classmethod
    def from_connection(cls, conn: Any) -> SshTarget:
        extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else dict(conn.extra or {})
        ciphers = extra.get("ciphers")
        if isinstance(ciphers, str):
            ciphers = [c.strip() for c in ciphers.split(",") if c.strip()]
        return cls(
            conn_id=conn.conn_id, host=conn.host or "localhost", port=int(conn.port or 22),
            username=conn.login or None, password=conn.password or None,
            key_file=extra.get("key_file") or None, private_key=extra.get("private_key") or None,
            passphrase=extra.get("private_key_passphrase") or None,
            host_key=extra.get("host_key") or None, known_hosts=extra.get("known_hosts") or None,
            verify_host_key=not _truthy(extra.get("no_host_key_check", False)),
            ciphers=tuple(ciphers or PREFERRED_CIPHERS),
            connect_timeout=float(extra.get("conn_timeout") or extra.get("timeout") or 30),
            transport=_transport_name(conn.conn_id, extra.get("transport")),
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def trust_source(self) -> str:
        if self.host_key:
            return f"the host_key pinned in connection {self.conn_id!r}"
        return f"known_hosts file {self.known_hosts_path()}"

    def known_hosts_path(self) -> str:
        return os.path.expanduser(self.known_hosts or "~/.ssh/known_hosts")

    def known_hosts_line(self) -> str:
        """The pinned ``host_key`` as a known_hosts line for this host and port."""
        key = (self.host_key or "").strip()
        if " " not in key:  # the airflow SSH hook allows the bare base64 with the type implied
            key = f"ssh-ed25519 {key}"
        patterns = f"[{self.host}]:{self.port}" if self.port != 22 else self.host
        return f"{patterns} {key}\n"

    def host_key_refusal(self, presented: str, detail: str) -> str:
        """The message of a refused host key: which server, against what, and what it presented."""
        return (f"refusing SFTP server {self.address} (connection {self.conn_id!r}): its host key is unknown or has "
                f"CHANGED compared with {self.trust_source()}. The server presented {presented}. If the partner "
                f"rotated its key, check the new fingerprint with them out of band, then update the connection's "
                f"host_key / known_hosts. ({detail})")

    def known_hosts_arg(self) -> Any:
        """asyncssh's ``known_hosts``: the pinned key, a known_hosts file, or None (unchecked)."""
        import asyncssh

        if not self.verify_host_key:
            return None
        if self.host_key:
            return asyncssh.import_known_hosts(self.known_hosts_line())
        return self.checked_known_hosts_path()

    def checked_known_hosts_path(self) -> str:
        path = self.known_hosts_path()
        if not os.path.exists(path):
            raise HostKeyError(f"cannot verify the host key of {self.address} (connection {self.conn_id!r}): "
                               f"known_hosts file {path} does not exist and the connection pins no host_key; "
                               "add the server's key to one of them")
        return path

    def options(self) -> dict[str, Any]:
        import asyncssh

        kw: dict[str, Any] = {
            "host": self.host, "port": self.port, "username": self.username,
            "known_hosts": self.known_hosts_arg(), "compression_algs": None,
            "encryption_algs": list(self.ciphers), "connect_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive_seconds, "agent_path": None,
        }
        if self.private_key:
            kw["client_keys"] = [asyncssh.import_private_key(self.private_key, self.passphrase)]
        elif self.key_file:
            kw["client_keys"] = [asyncssh.read_private_key(os.path.expanduser(self.key_file), self.passphrase)]
        else:
            kw["client_keys"] = None
        if self.password:
            kw["password"] = self.password
        return kw


TRANSPORTS = ("auto", "openssh", "asyncssh")


def _transport_name(conn_id: str, value: Any) -> str:
    name = str(value or "auto").strip().lower()
    if name not in TRANSPORTS:
        raise SftpError(f"connection {conn_id!r}: extra.transport {value!r} is not one of {', '.join(TRANSPORTS)}")
    return name


async def presented_host_key(target: SshTarget) -> str:
    """The algorithm and fingerprint of the key the server presents now (for error messages)."""
    import asyncssh

    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(target.host, target.port), 10)
    except (OSError, TimeoutError, asyncssh.Error):
        return "unknown"
    return f"{key.get_algorithm()} {key.get_fingerprint()}" if key is not None else "unknown"


def prepare(target: SshTarget) -> None:
    """Before connecting, either way: asyncssh's INFO lines off, a warning when verification is off."""
    logging.getLogger("asyncssh").setLevel(max(logging.WARNING, logging.getLogger("asyncssh").level))
    if not target.verify_host_key:
        log.warning("Host key verification is OFF for connection %r (%s): no_host_key_check is set",
                    target.conn_id, target.address)


async def connect(target: SshTarget) -> asyncssh.SSHClientConnection:
    """Open one verified SSH connection; HostKeyError with the presented fingerprint on a bad key."""
    import asyncssh

    prepare(target)
    try:
        return await asyncssh.connect(**target.options())
    except asyncssh.HostKeyNotVerifiable as e:
        raise HostKeyError(target.host_key_refusal(await presented_host_key(target), str(e))) from None
    except asyncssh.PermissionDenied as e:
        raise SftpError(f"SFTP login to {target.address} as {target.username!r} (connection {target.conn_id!r}) "
                        f"was refused: {e}") from None
    except (OSError, asyncssh.Error) as e:
        raise SftpError(f"cannot connect to SFTP server {target.address} (connection {target.conn_id!r}): "
                        f"{type(e).__name__}: {e}") from e


class AsyncSshSession:
    """An SFTP session on an in-process asyncssh connection."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.sftp: asyncssh.SFTPClient | None = None
        self._conn: Any = None

    async def open(self) -> asyncssh.SFTPClient:
        self._conn = await connect(self.target)
        self.sftp = await self._conn.start_sftp_client()
        return self.sftp

    async def close(self) -> None:
        if self.sftp is not None:
            self.sftp.exit()
        if self._conn is not None:
            self._conn.close()
            try:
                await asyncio.wait_for(self._conn.wait_closed(), 5)
            except Exception:  # noqa: BLE001, S110 - closing anyway
                pass
        self.sftp = self._conn = None


def choose_transport(target: SshTarget) -> str:
    """``openssh`` or ``asyncssh`` for this target; an explicit ``openssh`` that cannot serve it fails."""
    from s3lander.hooks.sftp_openssh import unusable_reason

    if target.transport == "asyncssh":
        return "asyncssh"
    why = unusable_reason(target)
    if why is None:
        return "openssh"
    if target.transport == "openssh":
        raise SftpError(f"connection {target.conn_id!r} asks for transport 'openssh', which cannot serve it: {why}")
    log.info("SFTP connection %r uses the asyncssh transport: %s", target.conn_id, why)
    return "asyncssh"


class SftpPool:
    """A few reused SSH connections with one SFTP session each; files are spread over them.

    Over the OpenSSH transport, files of at least :data:`BULK_MIN` bytes are read by bulk
    sessions instead (:class:`~s3lander.hooks.sftp_bulk.BulkSession`, one ``ssh`` each),
    opened on demand or ahead of time (``bulk_ahead`` of them with the pool's own sessions, more
    with :meth:`warm_bulk`), reused from file to file and closed with the pool. If one cannot be
    opened, large files fall back to the pool's sessions.
    """

    def __init__(self, target: SshTarget, connections: int = 1, *, bulk_ahead: int = 0) -> None:
        self.target, self.size, self.bulk_ahead = target, max(1, connections), bulk_ahead
        self._open: list[Any] = []
        self.sessions: list[asyncssh.SFTPClient] = []
        self.transport = ""
        self._next = 0
        self._bulk_idle: list[BulkSession] = []
        self._bulk_opening: list[asyncio.Future[BulkSession]] = []
        self._bulk_failed: str | None = None

    async def __aenter__(self) -> SftpPool:
        from s3lander.hooks.sftp_openssh import OpenSshSession

        self.transport = choose_transport(self.target)
        kind = OpenSshSession if self.transport == "openssh" else AsyncSshSession
        if kind is OpenSshSession:
            prepare(self.target)
            if self.target.verify_host_key and not self.target.host_key:
                self.target.checked_known_hosts_path()
        self._open = [kind(self.target) for _ in range(self.size)]
        if kind is OpenSshSession:  # their handshakes overlap those of the pool's sessions
            self._bulk_opening = [asyncio.ensure_future(self._open_bulk()) for _ in range(self.bulk_ahead)]
        try:
            opened = await asyncio.gather(*(s.open() for s in self._open), return_exceptions=True)  # at once
        except BaseException:  # cancelled while connecting: no ssh process may outlive us
            await self.close()
            raise
        failed = next((r for r in opened if isinstance(r, BaseException)), None)
        if failed is not None:
            await self.close()
            raise failed
        self.sessions = list(opened)  # type: ignore[arg-type]
        log.info("SFTP connection %r: %d session(s) to %s over the %s transport", self.target.conn_id, self.size,
                 self.target.address, self.transport)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        opening, self._bulk_opening = self._bulk_opening, []
        for done in await asyncio.gather(*opening, return_exceptions=True):
            if not isinstance(done, BaseException):
                self._bulk_idle.append(done)
        idle, self._bulk_idle = self._bulk_idle, []
        await asyncio.gather(*(asyncio.to_thread(b.close) for b in idle), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self._open), return_exceptions=True)
        self._open, self.sessions = [], []

    # --- large files ------------------------------------------------------------------------
    def bulk_wanted(self, size: int | None) -> bool:
        """Whether a file of ``size`` bytes would be read by a bulk session."""
        return (self.transport == "openssh" and self._bulk_failed is None and size is not None
                and size >= BULK_MIN)

    def warm_bulk(self, sizes: Iterable[int], *, at_most: int) -> None:
        """Start opening the bulk sessions that files of these sizes will use (at most
        ``at_most``), so their SSH handshakes overlap other set-up."""
        want = min(at_most, sum(1 for n in sizes if self.bulk_wanted(n)))
        while len(self._bulk_idle) + len(self._bulk_opening) < want:
            self._bulk_opening.append(asyncio.ensure_future(self._open_bulk()))

    async def _open_bulk(self) -> BulkSession:
        from s3lander.hooks.sftp_bulk import BulkSession

        session = BulkSession(self.target)
        await asyncio.to_thread(session.open)  # closes itself if it fails
        log.info("SFTP connection %r: a bulk session for large files is open", self.target.conn_id)
        return session

    async def _take_bulk(self) -> BulkSession | None:
        try:
            if self._bulk_idle:
                return self._bulk_idle.pop()
            if self._bulk_opening:
                opening = self._bulk_opening.pop(0)
                try:
                    return await asyncio.shield(opening)
                except asyncio.CancelledError:
                    self._bulk_opening.append(opening)  # closed with the pool, not left running
                    raise
            return await self._open_bulk()
        except (SftpError, OSError) as e:
            if self._bulk_failed is None:
                log.warning("Large files of connection %r are read over the pool's sessions instead: %s",
                            self.target.conn_id, e)
            self._bulk_failed = str(e)
            return None

    async def fetch(self, remote_path: str, consume: Callable[[bytes], Any], *, executor: Executor,
                    md5: bool = False, sha256: bool = True, expected_size: int | None = None,
                    session: asyncssh.SFTPClient | None = None) -> Fetched:
        """:func:`fetch` a file, through a bulk session when it is large (``consume`` is then
        called on an ``executor`` thread for every piece), else on ``session`` or the next one."""
        bulk = await self._take_bulk() if self.bulk_wanted(expected_size) else None
        if bulk is None:
            return await fetch(session or self.session(), remote_path, consume, executor=executor, md5=md5,
                               sha256=sha256, expected_size=expected_size)
        read = asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(bulk.read, remote_path, consume, md5=md5, sha256=sha256,
                                        expected_size=expected_size))
        try:
            return await asyncio.shield(read)
        except asyncio.CancelledError:
            bulk.kill()  # the blocked read then ends with EOF; its pipes are closed after it
            await asyncio.gather(read, return_exceptions=True)
            raise
        finally:
            if bulk.broken:
                await asyncio.to_thread(bulk.close)
            else:
                self._bulk_idle.append(bulk)

    def session(self) -> asyncssh.SFTPClient:
        s = self.sessions[self._next % len(self.sessions)]
        self._next += 1
        return s

    @property
    def primary(self) -> asyncssh.SFTPClient:
        return self.sessions[0]


async def list_files(sftp: asyncssh.SFTPClient, inbox: str, *, recursive: bool) -> list[RemoteFile]:
    """Regular files under ``inbox`` (relative paths). Symlinks are not followed."""
    import asyncssh

    out: list[RemoteFile] = []
    todo = [""]
    while todo:
        rel = todo.pop()
        folder = posixpath.join(inbox, rel) if rel else inbox
        try:
            entries = [e async for e in sftp.scandir(folder)]
        except asyncssh.SFTPNoSuchFile:
            if rel:
                continue  # removed while we walked
            raise SftpError(f"SFTP inbox {inbox!r} does not exist") from None
        for e in entries:
            name = e.filename if isinstance(e.filename, str) else e.filename.decode("utf-8", "surrogateescape")
            if name in {".", ".."}:
                continue
            mode = e.attrs.permissions or 0
            path = f"{rel}/{name}" if rel else name
            if stat_mod.S_ISDIR(mode):
                if recursive:
                    todo.append(path)
            elif stat_mod.S_ISREG(mode):
                out.append(RemoteFile(path=path, size=int(e.attrs.size or 0), mtime=float(e.attrs.mtime or 0)))
    return sorted(out)


@dataclass
class Fetched:
    """What was read: byte count, digests, and whether the file changed while it was read."""

    bytes: int
    sha256: str
    md5: str | None
    size_after: int
    mtime_after: float

    def changed_since(self, f: RemoteFile) -> bool:
        return self.bytes != f.size or self.size_after != f.size or self.mtime_after != f.mtime


class Digests:
    """The digests a read computes on its way (SHA-256 and/or MD5), and the ``Fetched`` it ends with."""

    def __init__(self, *, sha256: bool, md5: bool) -> None:
        self._sha256 = hashlib.sha256() if sha256 else None
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.bytes = 0

    def update(self, data: bytes) -> None:
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.bytes += len(data)

    def fetched(self, *, size_after: int, mtime_after: float) -> Fetched:
        return Fetched(bytes=self.bytes, sha256=self._sha256.hexdigest() if self._sha256 is not None else "",
                       md5=self._md5.hexdigest() if self._md5 is not None else None,
                       size_after=size_after, mtime_after=mtime_after)


async def fetch(sftp: asyncssh.SFTPClient, remote_path: str, consume: Callable[[bytes], Any], *,
                executor: Executor, md5: bool = False, sha256: bool = True, read_size: int = READ_SIZE,
                expected_size: int | None = None, inline_below: int = INLINE_BELOW,
                block_size: int = BLOCK_SIZE, max_requests: int = MAX_REQUESTS) -> Fetched:
    """Stream a remote file into ``consume`` (called in ``executor``), hashing as it goes.

    Up to ``max_requests`` SFTP reads of ``block_size`` bytes are in flight; their replies are
    handed on in file order, a ``read_size`` batch at a time, so reading batch N+1 overlaps
    hashing and uploading batch N. Each reply's ``bytes`` goes to ``consume`` as it came off
    the wire: asyncssh's own parallel reader reassembles every read into a fresh bytearray
    and copies it again into ``bytes`` (two extra copies of every byte, measured as the
    largest CPU cost of the read path). A short reply is completed by a read of the rest;
    an empty one is end-of-file. After the last byte the open handle is stat'ed again, so a
    file that grew or was rewritten while read is detected.

    ``sha256=False`` skips our SHA-256 when ``consume`` computes it anyway (the S3 sink
    does; ``Fetched.sha256`` is then empty). With ``expected_size`` (the listed size) no
    read is sent past it: the stat after the last byte says whether the file grew, and a
    shrunk file still ends at its real end. A file of at most ``inline_below`` bytes is
    consumed on the event loop (no thread hand-off): it fits one S3 chunk, so ``consume``
    only buffers and hashes it.
    """
    loop = asyncio.get_running_loop()
    digests = Digests(sha256=sha256, md5=md5)

    def take(blocks: list[bytes]) -> None:
        for data in blocks:
            digests.update(data)
            consume(data)

    inline = expected_size is not None and expected_size <= inline_below
    pending: asyncio.Future[Any] | None = None

    async def hand_on(batch: list[bytes]) -> None:
        """Give a batch to ``take``; at most one batch is being taken while the next is read."""
        nonlocal pending
        if inline:
            take(batch)
            return
        if pending is not None:
            await pending
        pending = loop.run_in_executor(executor, take, batch)

    # block_size=0: every read() is exactly one SFTP request, returned as received
    async with sftp.open(remote_path, "rb", block_size=0) as f:
        plan = ReadPlan(block_size=block_size, max_requests=max_requests, expected_size=expected_size, first_id=0)
        reads: dict[int, asyncio.Task[bytes]] = {}

        def send(requests: list[Request]) -> None:
            for r in requests:
                reads[r.id] = asyncio.ensure_future(f.read(r.length, r.offset))

        batch: list[bytes] = []
        batched = 0
        try:
            send(plan.fill())
            while (head := plan.head()) is not None:
                data = await reads.pop(head.id)
                if not data:  # end of file (it may have shrunk since it was listed)
                    break
                rest = plan.got(len(data))  # a short reply: the rest is asked for before anything later
                if rest is not None:
                    send([rest])
                batch.append(data)
                batched += len(data)
                send(plan.fill())
                if batched >= read_size:
                    await hand_on(batch)
                    batch, batched = [], 0
            if batch:
                await hand_on(batch)
            if pending is not None:
                await pending
        finally:
            for task in reads.values():
                task.cancel()
            if reads:
                await asyncio.gather(*reads.values(), return_exceptions=True)
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
        attrs = await f.stat()
    return digests.fetched(size_after=int(attrs.size or 0), mtime_after=float(attrs.mtime or 0))


async def read_small(sftp: asyncssh.SFTPClient, remote_path: str, limit: int = 1 << 20) -> bytes:
    async with sftp.open(remote_path, "rb") as f:
        return await f.read(limit)


async def makedirs(sftp: asyncssh.SFTPClient, path: str) -> None:
    await sftp.makedirs(path, exist_ok=True)


class FastSftpHook:
    """Resolves an Airflow SFTP/SSH connection into an :class:`SshTarget` and opens pools.

    :param sftp_conn_id: the Airflow connection (``conn_type`` sftp or ssh)
    """

    conn_name_attr = "sftp_conn_id"
    default_conn_name = "sftp_default"

    def __init__(self, sftp_conn_id: str = default_conn_name) -> None:
        self.sftp_conn_id = sftp_conn_id
        self._target: SshTarget | None = None

    @property
    def target(self) -> SshTarget:
        if self._target is None:
            from airflow.sdk import BaseHook

            self._target = SshTarget.from_connection(BaseHook.get_connection(self.sftp_conn_id))
        return self._target

    async def atarget(self) -> SshTarget:
        """The target, resolved from an async context (triggers)."""
        if self._target is None:
            from airflow.sdk import BaseHook

            self._target = SshTarget.from_connection(await BaseHook.aget_connection(self.sftp_conn_id))
        return self._target

    def pool(self, connections: int = 1, *, bulk_ahead: int = 0) -> SftpPool:
        return SftpPool(self.target, connections, bulk_ahead=bulk_ahead)
