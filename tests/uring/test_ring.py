"""The ring itself: setup, queueing, submitting, reaping (iomodels.uring.ring)."""

import ctypes
import errno
import os
import socket
import struct
import time

import pytest

from iomodels import uring
from iomodels.uring import (
    IORING_CQE_F_MORE,
    IOSQE_IO_LINK,
    Ring,
    abi,
    u32_diff,
)

from .support import needs_io_uring, wait_for

pytestmark = needs_io_uring


def test_u32_diff_wraps():
    assert u32_diff(0, 2**32 - 1) == 1
    assert u32_diff(5, 2**32 - 3) == 8
    assert u32_diff(7, 7) == 0
    assert u32_diff(2**32 - 1, 0) == 2**32 - 1


def test_read_cqes_across_u32_wrap():
    """Head at 2**32 - 2, tail wrapped to 2: four CQEs, read in order over
    the end of a 4-slot ring and across the u32 wrap of the indices."""
    entries, off = 4, 8
    buf = bytearray(off + entries * 16)
    head = 2**32 - 2
    tail = 2
    for k in range(4):
        slot = ((head + k) & 0xFFFFFFFF) & (entries - 1)
        struct.pack_into("<QiI", buf, off + slot * 16, 1000 + k, k, 0)
    got = uring.read_cqes(memoryview(buf), off, head, tail, entries - 1)
    assert got == [(1000 + k, k, 0) for k in range(4)]
    assert uring.read_cqes(memoryview(buf), off, tail, tail, 3) == []


def test_nop_round_trip_preserves_user_data(ring):
    values = [0, 1, 42, 2**32 - 1, 2**32, 2**63 + 5, uring.USER_DATA_RESERVED - 1]
    for v in values:
        ring.prep_nop(v)
    assert ring.submit_and_wait(len(values)) == len(values)
    got = ring.reap()
    assert sorted(g[0] for g in got) == sorted(values)
    assert all(res == 0 for _, res, _ in got)
    assert ring.reap() == []


def test_timeout_wait_returns(ring):
    t0 = time.monotonic()
    ring.submit_and_wait(1, timeout=0.05)
    elapsed = time.monotonic() - t0
    assert 0.03 < elapsed < 1.0
    assert ring.reap() == []


def test_timeout_fallback_sqe(ring):
    """Without EXT_ARG the wait is bounded by an internal timeout SQE whose
    completion never reaches the caller."""
    ring._ext_arg = False
    t0 = time.monotonic()
    ring.submit_and_wait(1, timeout=0.05)
    assert 0.03 < time.monotonic() - t0 < 1.0
    assert ring.reap() == []
    ring.prep_nop(9)
    ring.submit_and_wait(1, timeout=1.0)
    assert ring.reap() == [(9, 0, 0)]
    ring.submit_and_wait(1, timeout=0.02)
    time.sleep(0.05)
    ring.submit_and_wait(0)
    assert ring.reap() == []


def test_close_is_idempotent_and_context_manager():
    with Ring(4) as r:
        r.prep_nop(1)
        r.submit_and_wait(1)
        assert r.reap() == [(1, 0, 0)]
    assert r.closed and r.fd == -1
    r.close()
    with pytest.raises(ValueError):
        r.submit_and_wait(0)


def test_recv_completion(ring, pair):
    a, b = pair
    buf = bytearray(64)
    ring.prep_recv(a.fileno(), buf, 7)
    ring.submit_and_wait(0)
    assert ring.reap() == []  # nothing there yet: still pending
    assert ring.holds_buffer(7)
    b.sendall(b"hello")
    [(ud, res, _)] = wait_for(ring, 1)
    assert (ud, res) == (7, 5)
    assert bytes(buf[:5]) == b"hello"
    assert not ring.holds_buffer(7)


def test_recv_with_offset_and_bytes_limit(ring, pair):
    a, b = pair
    buf = bytearray(b"." * 16)
    ring.prep_recv(a.fileno(), buf, 1, offset=4, nbytes=3)
    b.sendall(b"abcdef")
    [(_, res, _)] = wait_for(ring, 1)
    assert res == 3 and bytes(buf[:8]) == b"....abc."
    with pytest.raises(ValueError):
        ring.prep_recv(a.fileno(), buf, 2, offset=10, nbytes=10)


def test_send_completion(ring, pair):
    a, b = pair
    ring.prep_send(a.fileno(), b"ping", 11)
    ring.prep_send(a.fileno(), bytearray(b"-pong"), 12, sqe_flags=IOSQE_IO_LINK)
    ring.prep_send(a.fileno(), memoryview(b"!!readonly")[:2], 13)
    got = wait_for(ring, 3)
    assert sorted(got) == [(11, 4, 0), (12, 5, 0), (13, 2, 0)]
    b.settimeout(5)
    data = b""
    while len(data) < 11:
        data += b.recv(64)
    assert data == b"ping-pong!!"


def test_linked_send_then_recv(ring, pair):
    """A send linked to the next recv: the recv is issued only after the
    send completed (how the model saves a round trip per request)."""
    a, b = pair
    buf = bytearray(16)
    ring.prep_send(a.fileno(), b"request", 1, sqe_flags=IOSQE_IO_LINK)
    ring.prep_recv(a.fileno(), buf, 2)
    ring.submit_and_wait(1, timeout=2)
    first = ring.reap()
    assert first[0] == (1, 7, 0)
    b.settimeout(5)
    assert b.recv(16) == b"request"
    b.sendall(b"reply")
    got = first[1:] or wait_for(ring, 1)
    assert got == [(2, 5, 0)] and bytes(buf[:5]) == b"reply"


def test_accept_on_loopback(ring):
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        ring.prep_accept(lsock.fileno(), 21)
        ring.submit_and_wait(0)
        c = socket.create_connection(lsock.getsockname())
        try:
            [(ud, res, flags)] = wait_for(ring, 1)
            assert ud == 21 and res >= 0 and not flags & IORING_CQE_F_MORE
            conn = socket.socket(fileno=res)
            try:
                assert conn.getpeername() == c.getsockname()
            finally:
                conn.close()
        finally:
            c.close()


def test_multishot_accept(ring):
    if not ring.supports_multishot_accept:
        pytest.skip("multishot accept not supported by this kernel")
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        ring.prep_accept(lsock.fileno(), 30, multishot=True)
        ring.submit_and_wait(0)
        clients = [socket.create_connection(lsock.getsockname()) for _ in range(3)]
        try:
            got = wait_for(ring, 3)
            assert [g[0] for g in got] == [30, 30, 30]
            assert all(g[1] >= 0 and g[2] & IORING_CQE_F_MORE for g in got)
            for g in got:
                os.close(g[1])
            ring.prep_cancel(30, 31)
            rest = wait_for(ring, 2)
            assert (30, -errno.ECANCELED, 0) in rest
        finally:
            for c in clients:
                c.close()


def test_cancel_of_unknown_request(ring):
    ring.prep_cancel(12345, 1)
    assert wait_for(ring, 1) == [(1, -errno.ENOENT, 0)]


def test_close_via_ring(ring):
    s = socket.socket()
    fd = s.detach()
    ring.prep_close(fd, 50)
    assert wait_for(ring, 1) == [(50, 0, 0)]
    with pytest.raises(OSError):
        os.fstat(fd)


def test_cq_overflow_nothing_lost():
    """Far more completions than CQ slots, none reaped until the end: the
    kernel parks the excess (NODROP) and reap() flushes it all."""
    with Ring(4) as r:
        total = r.cq_entries * 10 + 3
        for i in range(total):
            r.prep_nop(i)  # auto-submits whenever the SQ is full
        r.submit_and_wait(0)
        if r.features & uring.IORING_FEAT_NODROP:
            # The excess is parked in the kernel and flagged to us.
            assert r._sq32[r._sq_kflags] & uring.IORING_SQ_CQ_OVERFLOW
        got = []
        for _ in range(100):
            got += r.reap()
            if len(got) >= total:
                break
            r.submit_and_wait(0)
        assert sorted(g[0] for g in got) == list(range(total))
        assert all(g[1] == 0 for g in got)


def test_index_wrap_around_small_ring():
    """Tens of thousands of NOPs through a 2-entry SQ / 4-entry CQ: the
    masked slot index wraps many thousands of times, nothing is lost or
    reordered."""
    with Ring(2, cq_entries=4) as r:
        assert r.sq_entries == 2 and r.cq_entries == 4
        n = 20000
        expect = 0
        for i in range(0, n, 2):
            r.prep_nop(i)
            r.prep_nop(i + 1)
            r.submit_and_wait(2)
            for ud, res, _ in r.reap():
                assert ud == expect and res == 0
                expect += 1
        assert expect == n
        assert r._sq_tail == n & 0xFFFFFFFF
        assert r._cq_head == n & 0xFFFFFFFF


class _FailOnce:
    """Stands in for the raw syscall: the first io_uring_enter fails with
    ``err`` (as a real one would, errno included), then calls go through."""

    def __init__(self, real, err):
        self.real, self.err, self.failed = real, err, False

    def __call__(self, nr, *args):
        if not self.failed and nr.value == uring.SYS_IO_URING_ENTER:
            self.failed = True
            ctypes.set_errno(self.err)
            return -1
        return self.real(nr, *args)


def test_enter_interrupted_returns_and_resubmits(ring, monkeypatch):
    fake = _FailOnce(uring._syscall, errno.EINTR)
    monkeypatch.setattr(uring, "_syscall", fake)
    ring.prep_nop(1)
    # EINTR with the SQE not taken yet: retried, so it is submitted on return.
    assert ring.submit_and_wait(1) == 1
    assert fake.failed and ring.pending_sqes() == 0
    assert wait_for(ring, 1) == [(1, 0, 0)]


def test_short_submit_is_completed(ring, monkeypatch):
    """The kernel may take fewer SQEs than queued (out of request memory):
    submit_and_wait submits the rest before it returns."""
    real = uring._syscall
    calls = []

    def short_first(nr, fd, to_submit, *rest):
        if nr is abi.NR_ENTER and not calls and to_submit > 1:
            calls.append(to_submit)
            return real(nr, fd, 1, *rest)  # the kernel takes only one
        return real(nr, fd, to_submit, *rest)

    monkeypatch.setattr(uring, "_syscall", short_first)
    for ud in (1, 2, 3):
        ring.prep_nop(ud)
    assert ring.submit_and_wait(0) == 3
    assert calls == [3] and ring.pending_sqes() == 0
    assert sorted(wait_for(ring, 3)) == [(1, 0, 0), (2, 0, 0), (3, 0, 0)]


def test_enter_busy_reaps_then_retries(ring, monkeypatch):
    """EBUSY (a full CQ on older kernels): completions are moved to the
    backlog, the enter is retried, and reap() returns everything once."""
    buf = bytearray(8)
    a, b = socket.socketpair()
    try:
        ring.prep_nop(1)
        ring.submit_and_wait(1)
        fake = _FailOnce(uring._syscall, errno.EBUSY)
        monkeypatch.setattr(uring, "_syscall", fake)
        ring.prep_nop(2)
        ring.submit_and_wait(1)
        assert fake.failed
        # user_data 1 completed (in the backlog); reusing it for a new
        # buffer must not get that buffer released by the old completion.
        ring.prep_recv(a.fileno(), buf, 1)
        ring.submit_and_wait(0)
        assert sorted(ring.reap()) == [(1, 0, 0), (2, 0, 0)]
        assert ring.holds_buffer(1)
        b.sendall(b"z")
        assert wait_for(ring, 1) == [(1, 1, 0)]
    finally:
        a.close()
        b.close()


def test_many_in_one_batch():
    with Ring(64) as r:
        for i in range(64):
            r.prep_nop(i)
        assert r.pending_sqes() == 64
        assert r.submit_and_wait(64) == 64
        assert [g[0] for g in r.reap()] == list(range(64))
        assert r.pending_sqes() == 0


def test_plain_ring_without_taskrun_flags():
    with Ring(4, try_flags=False) as r:
        assert r.setup_flags == 0
        r.prep_nop(3)
        r.submit_and_wait(1)
        assert r.reap() == [(3, 0, 0)]
