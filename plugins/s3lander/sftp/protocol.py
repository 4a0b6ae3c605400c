"""The few SFTP version 3 packets of a bulk file read, as bytes (draft-ietf-secsh-filexfer-02).

The bulk reader (:mod:`s3lander.hooks.sftp_bulk`) speaks only INIT, OPEN, READ, FSTAT and
CLOSE, and understands VERSION, HANDLE, DATA, ATTRS and STATUS. Everything else an SFTP
session does (listing, sidecars, rename, remove) stays with asyncssh's client. This module
builds and parses those packets, and plans the read requests of one file (:class:`ReadPlan`,
which asyncssh's path, ``s3lander.hooks.sftp_fast.fetch``, follows too); it does no I/O, so it
is tested without a server.

Every packet is ``uint32 length, byte type, payload`` and every reply after VERSION starts
with the ``uint32`` request id it answers.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

INIT, VERSION, OPEN, CLOSE, READ, FSTAT = 1, 2, 3, 4, 5, 8
STATUS, HANDLE, DATA, ATTRS = 101, 102, 103, 105
#: SSH_FXF_READ, and the status codes a read distinguishes
FXF_READ = 0x1
FX_OK, FX_EOF = 0, 1
STATUS_NAMES = {0: "OK", 1: "EOF", 2: "no such file", 3: "permission denied", 4: "failure", 5: "bad message",
                6: "no connection", 7: "connection lost", 8: "operation unsupported"}
#: ATTRS flags
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME, ATTR_EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000
#: a reply's fixed head: length, type, request id
HEAD = struct.Struct(">IBI")
U32 = struct.Struct(">I")
_READ_TAIL = struct.Struct(">QI")


class ProtocolError(RuntimeError):
    """The server sent something an SFTP v3 server must not send here."""


def _string(b: bytes) -> bytes:
    return U32.pack(len(b)) + b


def _packet(kind: int, body: bytes) -> bytes:
    return U32.pack(len(body) + 1) + bytes((kind,)) + body


def init_packet(version: int = 3) -> bytes:
    return _packet(INIT, U32.pack(version))


def open_packet(request_id: int, path: bytes) -> bytes:
    """Open ``path`` for reading, with no attributes."""
    return _packet(OPEN, U32.pack(request_id) + _string(path) + U32.pack(FXF_READ) + U32.pack(0))


def read_packet(request_id: int, handle: bytes, offset: int, length: int) -> bytes:
    return _packet(READ, U32.pack(request_id) + _string(handle) + _READ_TAIL.pack(offset, length))


def fstat_packet(request_id: int, handle: bytes) -> bytes:
    return _packet(FSTAT, U32.pack(request_id) + _string(handle))


def close_packet(request_id: int, handle: bytes) -> bytes:
    return _packet(CLOSE, U32.pack(request_id) + _string(handle))


def parse_version(body: bytes) -> int:
    """The version of a VERSION reply's body (type byte excluded); extensions are ignored."""
    if len(body) < 4:
        raise ProtocolError(f"short VERSION reply ({len(body)} bytes)")
    return int(U32.unpack_from(body)[0])


def parse_string(body: bytes, at: int) -> tuple[bytes, int]:
    """The SSH string at ``at`` and the offset after it."""
    if at + 4 > len(body):
        raise ProtocolError("truncated string length")
    n = U32.unpack_from(body, at)[0]
    end = at + 4 + n
    if end > len(body):
        raise ProtocolError(f"string of {n} bytes runs past its packet")
    return bytes(body[at + 4:end]), end


@dataclass(frozen=True)
class Status:
    """A STATUS reply: code and the server's message."""

    code: int
    message: str

    def describe(self) -> str:
        name = STATUS_NAMES.get(self.code, f"status {self.code}")
        return f"{name}: {self.message}" if self.message and self.message.lower() != name else name


def parse_status(rest: bytes) -> Status:
    """A STATUS reply's body after the request id (v3 servers may omit message and language)."""
    if len(rest) < 4:
        raise ProtocolError("short STATUS reply")
    code = int(U32.unpack_from(rest)[0])
    message = ""
    if len(rest) >= 8:
        raw, _ = parse_string(rest, 4)
        message = raw.decode("utf-8", "replace")
    return Status(code, message)


def parse_handle(rest: bytes) -> bytes:
    handle, _ = parse_string(rest, 0)
    return handle


@dataclass(frozen=True)
class Attrs:
    """What a read needs of an ATTRS reply (None where the server left it out)."""

    size: int | None
    mtime: int | None


def parse_attrs(rest: bytes) -> Attrs:
    """An ATTRS reply's body after the request id."""
    try:
        flags = U32.unpack_from(rest)[0]
        at, size, mtime = 4, None, None
        if flags & ATTR_SIZE:
            size = struct.unpack_from(">Q", rest, at)[0]
            at += 8
        if flags & ATTR_UIDGID:
            at += 8
        if flags & ATTR_PERMISSIONS:
            at += 4
        if flags & ATTR_ACMODTIME:
            mtime = struct.unpack_from(">I", rest, at + 4)[0]
    except struct.error as e:
        raise ProtocolError(f"truncated ATTRS reply: {e}") from None
    return Attrs(size=size, mtime=mtime)


@dataclass
class Request:
    """One READ in flight: its id, and the bytes of the file it asks for."""

    id: int
    offset: int
    length: int


class ReadPlan:
    """The READ requests of one file, in file order, at most ``max_requests`` in flight.

    Replies are consumed in the order of the requests (``head``), which is file order. A
    short reply is completed by a request for the rest, placed before every later one, so
    bytes are never handed on out of order. With ``expected_size`` (the listed size) no
    request goes past it; a file that grew is caught by the stat after the last byte, and
    one that shrank ends at its real end (EOF).

    :param first_id: request ids count up from here (the caller owns the id space)
    """

    def __init__(self, *, block_size: int, max_requests: int, expected_size: int | None, first_id: int) -> None:
        if block_size <= 0 or max_requests <= 0:
            raise ValueError("block_size and max_requests must be positive")
        self.block_size, self.max_requests, self.expected_size = block_size, max_requests, expected_size
        self.inflight: deque[Request] = deque()
        self._next_offset = 0
        #: the id the next request will get (the caller's id space goes on from here)
        self.next_id = first_id
        self.done = False

    def _new(self, offset: int, length: int) -> Request:
        r = Request(self.next_id, offset, length)
        self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        return r

    def fill(self) -> list[Request]:
        """New requests to send now, appended to the in-flight queue."""
        out: list[Request] = []
        size = self.expected_size
        while not self.done and len(self.inflight) < self.max_requests and (size is None or self._next_offset < size):
            n = self.block_size if size is None else min(self.block_size, size - self._next_offset)
            r = self._new(self._next_offset, n)
            self._next_offset += n
            self.inflight.append(r)
            out.append(r)
        return out

    def head(self) -> Request | None:
        return self.inflight[0] if self.inflight else None

    def got(self, n: int) -> Request | None:
        """The head request was answered with ``n`` bytes (> 0); a short answer returns the
        request for the rest, which becomes the new head (send it)."""
        r = self.inflight.popleft()
        if n > r.length:
            raise ProtocolError(f"{n} bytes in answer to a read of {r.length}")
        if n == r.length:
            return None
        rest = self._new(r.offset + n, r.length - n)
        self.inflight.appendleft(rest)
        return rest

    def end_of_file(self) -> list[Request]:
        """The head request hit end-of-file: no more requests; what is left in flight is
        answered with EOF too and must still be received (returned)."""
        self.inflight.popleft()
        self.done = True
        rest = list(self.inflight)
        self.inflight.clear()
        return rest
