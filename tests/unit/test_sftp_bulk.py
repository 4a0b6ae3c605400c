"""The bulk SFTP reader without a server: packet bytes, the read plan, and the read loop against a
fake SFTP server on a pair of pipes (short, reordered and failing replies)."""

from __future__ import annotations

import hashlib
import os
import select
import struct
import threading
import types

import pytest

from s3lander.hooks.sftp_bulk import BulkSession
from s3lander.hooks.sftp_fast import SftpError, SshTarget
from s3lander.sftp import protocol as p

# --- packets -------------------------------------------------------------------------------


def test_packets_are_framed_as_sftp_v3():
    assert p.init_packet() == b"\x00\x00\x00\x05\x01\x00\x00\x00\x03"
    pkt = p.read_packet(7, b"h1", 1 << 33, 261120)
    assert pkt == struct.pack(">IBI", len(pkt) - 4, p.READ, 7) + b"\x00\x00\x00\x02h1" + struct.pack(">QI", 1 << 33,
                                                                                                       261120)
    op = p.open_packet(1, "dir/ü é.csv".encode())
    assert op[4] == p.OPEN and op.endswith(struct.pack(">II", p.FXF_READ, 0))
    assert "dir/ü é.csv".encode() in op


def test_replies_parse_and_truncation_is_a_protocol_error():
    assert p.parse_status(struct.pack(">I", 2) + p.U32.pack(4) + b"gone" + p.U32.pack(0)).describe() == \
        "no such file: gone"
    assert p.parse_status(struct.pack(">I", 1)).code == p.FX_EOF  # v3 servers may omit the message
    attrs = struct.pack(">IQIIII", p.ATTR_SIZE | p.ATTR_UIDGID | p.ATTR_ACMODTIME, 5, 0, 0, 100, 1700000000)
    assert p.parse_attrs(attrs) == p.Attrs(size=5, mtime=1700000000)
    assert p.parse_attrs(struct.pack(">I", 0)) == p.Attrs(size=None, mtime=None)
    with pytest.raises(p.ProtocolError):
        p.parse_attrs(struct.pack(">IQ", p.ATTR_SIZE | p.ATTR_ACMODTIME, 5))
    with pytest.raises(p.ProtocolError):
        p.parse_handle(p.U32.pack(10) + b"short")


# --- the plan -----------------------------------------------------------------------------


def test_plan_keeps_requests_in_flight_up_to_the_listed_size():
    plan = p.ReadPlan(block_size=10, max_requests=3, expected_size=25, first_id=5)
    first = plan.fill()
    assert [(r.id, r.offset, r.length) for r in first] == [(5, 0, 10), (6, 10, 10), (7, 20, 5)]
    assert plan.fill() == []  # nothing past the listed size
    assert plan.got(10) is None
    assert plan.fill() == []
    assert plan.next_id == 8


def test_short_answer_is_completed_before_anything_later():
    plan = p.ReadPlan(block_size=10, max_requests=2, expected_size=None, first_id=1)
    plan.fill()
    rest = plan.got(4)
    assert (rest.offset, rest.length) == (4, 6) and plan.head() is rest
    assert [r.offset for r in plan.inflight] == [4, 10]
    with pytest.raises(p.ProtocolError):
        plan.got(7)  # more than asked


def test_end_of_file_stops_the_plan_and_returns_what_is_still_in_flight():
    plan = p.ReadPlan(block_size=10, max_requests=4, expected_size=None, first_id=0xFFFFFFFE)
    ids = [r.id for r in plan.fill()]
    assert ids == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]  # ids wrap like the protocol's uint32
    assert [r.id for r in plan.end_of_file()] == ids[1:]
    assert plan.done and plan.head() is None and plan.fill() == []


# --- the read loop against a fake server ---------------------------------------------------


class FakeServer(threading.Thread):
    """Answers OPEN, READ, FSTAT and CLOSE for one file. ``short`` caps each DATA reply;
    ``reorder`` answers the READs that arrived together last-first; ``drop_after`` closes the
    connection once that many bytes were sent; ``deny`` refuses the OPEN."""

    def __init__(self, content: bytes, *, short: int | None = None, reorder: bool = False,
                 drop_after: int | None = None, deny: bool = False, size_seen: int | None = None) -> None:
        super().__init__(daemon=True)
        self.content, self.short, self.reorder, self.drop_after, self.deny = content, short, reorder, drop_after, deny
        self.size_seen = len(content) if size_seen is None else size_seen
        self.c2s_r, self.c2s_w = os.pipe()
        self.s2c_r, self.s2c_w = os.pipe()
        self.sent = 0
        self.reads: list[tuple[int, int]] = []

    def _reply(self, kind: int, rid: int, body: bytes) -> None:
        pkt = struct.pack(">IBI", len(body) + 5, kind, rid) + body
        if self.drop_after is not None and self.sent + len(pkt) > self.drop_after:
            os.write(self.s2c_w, pkt[: max(0, self.drop_after - self.sent)])
            raise EOFError
        os.write(self.s2c_w, pkt)
        self.sent += len(pkt)

    def run(self) -> None:
        buf = b""
        try:
            while True:
                ready = select.select([self.c2s_r], [], [], 0.02)[0]
                if ready:
                    chunk = os.read(self.c2s_r, 65536)
                    if not chunk:
                        return
                    buf += chunk
                    if select.select([self.c2s_r], [], [], 0.005)[0]:
                        continue  # take what arrives together, then answer it
                pending = []
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                    n = struct.unpack(">I", buf[:4])[0]
                    pending.append(buf[4:4 + n])
                    buf = buf[4 + n:]
                if self.reorder:
                    pending.reverse()
                for pkt in pending:
                    self._answer(pkt)
        except (EOFError, OSError):
            return
        finally:
            os.close(self.s2c_w)

    def _answer(self, pkt: bytes) -> None:
        kind = pkt[0]
        if kind == p.INIT:
            os.write(self.s2c_w, struct.pack(">IBI", 5, p.VERSION, 3))
            return
        rid = struct.unpack(">I", pkt[1:5])[0]
        if kind == p.OPEN:
            if self.deny:
                self._reply(p.STATUS, rid, struct.pack(">I", 3) + p.U32.pack(17) + b"Permission denied" + p.U32.pack(0))
            else:
                self._reply(p.HANDLE, rid, p.U32.pack(1) + b"h")
        elif kind == p.READ:
            off, ln = struct.unpack(">QI", pkt[10:22])
            self.reads.append((off, ln))
            data = self.content[off:off + min(ln, self.short or ln)]
            if not data:
                self._reply(p.STATUS, rid, struct.pack(">I", p.FX_EOF) + p.U32.pack(0) + p.U32.pack(0))
            else:
                self._reply(p.DATA, rid, p.U32.pack(len(data)) + data)
        elif kind == p.FSTAT:
            self._reply(p.ATTRS, rid, struct.pack(">IQII", p.ATTR_SIZE | p.ATTR_ACMODTIME, self.size_seen, 1, 42))
        elif kind == p.CLOSE:
            self._reply(p.STATUS, rid, struct.pack(">I", p.FX_OK) + p.U32.pack(0) + p.U32.pack(0))


def session_on(server: FakeServer) -> BulkSession:
    """A BulkSession whose ssh is the fake server's pipes (after the handshake open() would do)."""
    target = SshTarget(conn_id="partner", host="127.0.0.1", port=22, username="u")
    s = BulkSession(target)
    s._rfd, s._wfd = server.s2c_r, server.c2s_w
    s._proc = types.SimpleNamespace(wait=lambda timeout=None: 0, returncode=0, poll=lambda: 0, stderr=None)
    s.broken = False
    server.start()
    return s


CONTENT = os.urandom(1_000_003)


@pytest.mark.parametrize("opts", [{}, {"short": 7_000}, {"reorder": True}, {"reorder": True, "short": 9_999}],
                         ids=["plain", "short", "reordered", "reordered-short"])
def test_every_byte_is_handed_on_in_file_order(opts):
    server = FakeServer(CONTENT, **opts)
    s = session_on(server)
    out = bytearray()
    got = s.read("in/f.bin", out.extend, md5=True, expected_size=len(CONTENT), block_size=32_768, max_requests=8)
    assert bytes(out) == CONTENT
    assert got.bytes == len(CONTENT) and got.size_after == len(CONTENT) and got.mtime_after == 42
    assert got.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert got.md5 == hashlib.md5(CONTENT, usedforsecurity=False).hexdigest()
    assert max(off + ln for off, ln in server.reads) == len(CONTENT)  # never past the listed size
    assert not s.broken
    again = bytearray()  # the session is reused for the next file
    s.read("in/f.bin", again.extend, expected_size=None, block_size=65_536, max_requests=4)
    assert bytes(again) == CONTENT


def test_a_file_that_shrank_ends_at_its_real_end_and_the_stat_tells():
    server = FakeServer(CONTENT[:500_000], reorder=True)
    s = session_on(server)
    out = bytearray()
    got = s.read("f.bin", out.extend, expected_size=len(CONTENT), block_size=32_768, max_requests=8)
    assert bytes(out) == CONTENT[:500_000] and got.bytes == 500_000
    assert not s.broken  # every reply in flight was received: the session can go on
    assert len(CONTENT) != got.size_after


def test_a_dropped_connection_fails_naming_the_file_and_breaks_the_session():
    s = session_on(FakeServer(CONTENT, drop_after=300_000))
    with pytest.raises(SftpError, match=r"SFTP read of 'in/f\.bin' .*connection 'partner'.* failed after \d+ bytes"):
        s.read("in/f.bin", lambda d: None, expected_size=len(CONTENT), block_size=32_768, max_requests=8)
    assert s.broken


def test_a_refused_open_names_the_file_and_the_reason():
    s = session_on(FakeServer(CONTENT, deny=True))
    refused = r"cannot open 'secret\.csv' on 127\.0\.0\.1:22 \(connection 'partner'\): permission denied$"
    with pytest.raises(SftpError, match=refused):
        s.read("secret.csv", lambda d: None)
