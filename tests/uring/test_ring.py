"""Tests of the io_uring ring layer on its own (iomodels.uring)."""

import contextlib
import ctypes
import errno
import gc
import os
import shutil
import socket
import struct
import subprocess
import time
import weakref

import pytest

from iomodels import uring
from iomodels.uring import (
    IORING_CQE_BUFFER_SHIFT,
    IORING_CQE_F_BUFFER,
    IORING_CQE_F_MORE,
    IOSQE_IO_LINK,
    BufferRing,
    Ring,
    u32_diff,
)

_OK, _REASON = uring.probe()

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not _OK, reason=_REASON),
]


class Buf(bytearray):
    """A bytearray that can be weakly referenced (to watch its lifetime)."""


@pytest.fixture
def ring():
    r = Ring(32)
    yield r
    r.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def wait_for(r, count, timeout=5.0):
    """Reap until ``count`` completions have arrived (or fail)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {count} completions: {got!r}"
        r.submit_and_wait(1, timeout=min(left, 0.5))
        got += r.reap()
    return got


# -- pure helpers ------------------------------------------------------------


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


# -- basic ring --------------------------------------------------------------


def test_probe_reports_reason():
    ok, reason = uring.probe()
    assert ok and reason.startswith("io_uring")


@pytest.mark.parametrize(
    ("err", "expect"),
    [(errno.EPERM, "io_uring_setup: EPERM ("), (errno.ENOSYS, "io_uring_setup: ENOSYS")],
)
def test_probe_maps_setup_errors_to_a_reason(monkeypatch, err, expect):
    def failing_syscall(nr, *args):
        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(uring, "_syscall", failing_syscall)
    ok, reason = uring.probe()
    assert not ok and reason.startswith(expect)


def test_setup_flags_recorded(ring):
    assert ring.sq_entries == 32
    assert ring.cq_entries >= ring.sq_entries
    # One rung of the ladder was accepted, and that is what is recorded.
    assert ring.setup_flags in uring._SETUP_LADDER
    names = ring.setup_flag_names
    if "DEFER_TASKRUN" in names:
        assert "SINGLE_ISSUER" in names
    assert (
        "SINGLE_MMAP" in ring.feature_names
        or ring.features == 0
        or not ring.features & uring.IORING_FEAT_SINGLE_MMAP
    )


def test_nop_round_trip_preserves_user_data(ring):
    values = [0, 1, 42, 2**32 - 1, 2**32, 2**63 + 5, uring.USER_DATA_RESERVED - 1]
    for v in values:
        ring.prep_nop(v)
    assert ring.submit_and_wait(len(values)) == len(values)
    got = ring.reap()
    assert sorted(g[0] for g in got) == sorted(values)
    assert all(res == 0 for _, res, _ in got)
    assert ring.reap() == []


def test_register_probe(ring):
    ops = ring.register_probe()
    assert len(ops) > uring.IORING_OP_RECV
    for op in (
        uring.IORING_OP_NOP,
        uring.IORING_OP_ACCEPT,
        uring.IORING_OP_RECV,
        uring.IORING_OP_SEND,
        uring.IORING_OP_CLOSE,
        uring.IORING_OP_ASYNC_CANCEL,
    ):
        assert ring.supports(op)
    assert not ring.supports(255)
    assert not ring.supports(-1)


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


# -- sockets -----------------------------------------------------------------


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


def test_recv_buffer_cannot_be_resized_in_flight(ring, pair):
    a, b = pair
    buf = bytearray(16)
    ring.prep_recv(a.fileno(), buf, 3)
    ring.submit_and_wait(0)
    with pytest.raises(BufferError):
        buf.extend(b"x")  # would move the memory the kernel fills
    b.sendall(b"x")
    wait_for(ring, 1)
    buf.extend(b"x")  # released after the completion


def test_duplicate_user_data_with_buffer_is_refused(ring, pair):
    a, _ = pair
    ring.prep_recv(a.fileno(), bytearray(8), 5)
    with pytest.raises(ValueError):
        ring.prep_recv(a.fileno(), bytearray(8), 5)
    ring.prep_cancel(5, 6)
    got = wait_for(ring, 2)
    assert {g[0] for g in got} == {5, 6}


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


def test_cancel_pending_recv_keeps_buffer_alive(ring, pair):
    a, _ = pair
    buf = Buf(32)
    ref = weakref.ref(buf)
    ring.prep_recv(a.fileno(), buf, 40)
    ring.submit_and_wait(0)
    del buf
    gc.collect()
    assert ref() is not None, "buffer freed while the kernel may write it"
    ring.prep_cancel(40, 41)
    got = wait_for(ring, 2)
    assert (40, -errno.ECANCELED, 0) in got
    assert (41, 0, 0) in got
    gc.collect()
    assert ref() is None, "buffer still held after its completion"


def test_cancel_of_unknown_request(ring):
    ring.prep_cancel(12345, 1)
    assert wait_for(ring, 1) == [(1, -errno.ENOENT, 0)]


def test_close_ring_with_recv_in_flight(pair):
    """close() cancels and reaps in-flight operations before unmapping."""
    a, _ = pair
    r = Ring(4)
    buf = Buf(8)
    ref = weakref.ref(buf)
    r.prep_recv(a.fileno(), buf, 1)
    r.submit_and_wait(0)
    del buf
    r.close()
    gc.collect()
    assert ref() is None
    assert r.in_flight_buffers == 0


def test_close_via_ring(ring):
    s = socket.socket()
    fd = s.detach()
    ring.prep_close(fd, 50)
    assert wait_for(ring, 1) == [(50, 0, 0)]
    with pytest.raises(OSError):
        os.fstat(fd)


def test_multishot_recv_with_buffer_ring(ring, pair):
    if not ring.supports_multishot_recv:
        pytest.skip("multishot recv / provided buffer rings not supported")
    a, b = pair
    with BufferRing(ring, 1, 8, 64) as br:
        ring.prep_recv_select(a.fileno(), 60, 1, multishot=True)
        ring.submit_and_wait(0)
        received = b""
        for chunk in (b"one", b"two", b"three"):
            b.sendall(chunk)
            for ud, res, flags in wait_for(ring, 1):
                assert ud == 60 and res > 0
                assert flags & IORING_CQE_F_BUFFER
                assert flags & IORING_CQE_F_MORE
                bid = flags >> IORING_CQE_BUFFER_SHIFT
                view = br.view(bid, res)
                received += bytes(view)
                view.release()
                br.recycle(bid)
        assert received == b"onetwothree"
        ring.prep_cancel(60, 61)
        rest = wait_for(ring, 2)
        assert (60, -errno.ECANCELED, 0) in rest


# -- ring mechanics ------------------------------------------------------------


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
        if nr is uring._NR_ENTER and not calls and to_submit > 1:
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


# -- layouts against the header ------------------------------------------------


def _c_member(key):
    if key.startswith("sizeof("):
        return f'printf("{key} %zu\\n", sizeof(struct {key[7:-1]}));'
    struct_name, member = key.split(".")
    return f'printf("{key} %zu\\n", offsetof(struct {struct_name}, {member}));'


@pytest.mark.timeout(60)
def test_layout_matches_header(tmp_path):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("no C compiler")
    header = "/usr/include/linux/io_uring.h"
    if not os.path.exists(header):
        pytest.skip(f"no {header}")
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n"
        "#include <linux/io_uring.h>\nint main(void) {\n"
        + "\n".join(_c_member(k) for k in uring.LAYOUT)
        + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run([gcc, "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    c_layout = {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}
    assert c_layout == uring.LAYOUT


def test_sqe_struct_writes_fields_at_header_offsets():
    values = {
        "opcode": 0x11,
        "flags": 0x22,
        "ioprio": 0x3344,
        "fd": -5,
        "off": 0x0102030405060708,
        "addr": 0x1112131415161718,
        "len": 0x21222324,
        "op_flags": 0x31323334,
        "user_data": 0x4142434445464748,
        "buf_index": 0x5152,
        "personality": 0x6162,
        "file_index": 0x71727374,
        "addr3": 0x8182838485868788,
        "pad2": 0,
    }
    raw = uring._SQE.pack(*(values[name] for name, _ in uring.SQE_FIELDS))
    for name, code in uring.SQE_FIELDS:
        key = uring._LAYOUT_ALIASES.get("io_uring_sqe." + name, "io_uring_sqe." + name)
        (got,) = struct.unpack_from("<" + code, raw, uring.LAYOUT[key])
        assert got == values[name], name


def test_unmanaged_send_preparer(ring, pair):
    """Ring.unmanaged_send_preparer: the event loop's prep_send, which leaves
    the buffer's lifetime to the caller (nothing recorded in the ring)."""
    if not ring.supports(uring.IORING_OP_SEND):
        pytest.skip("IORING_OP_SEND not supported by this kernel")
    a, b = pair
    prep_send = ring.unmanaged_send_preparer()
    data = b"hello, unmanaged send"
    prep_send(a.fileno(), data, 77, 7)  # from offset 7
    ring.submit_and_wait(0)
    assert wait_for(ring, 1) == [(77, len(data) - 7, 0)]
    assert ring.in_flight_buffers == 0
    assert b.recv(100) == data[7:]


def test_batch_recycler_gives_buffers_back(ring, pair):
    """BufferRing.batch_recycler: a pool of 2 is used up (the third recv finds
    no buffer), then note()+flush() return both and recvs succeed again."""
    if not ring.supports_multishot_recv:
        pytest.skip("provided buffer rings not supported")
    a, b = pair
    with BufferRing(ring, 2, 2, 64) as pool:
        note, flush = pool.batch_recycler()
        bids = []
        for i, chunk in enumerate((b"one", b"two")):
            b.sendall(chunk)
            ring.prep_recv_select(a.fileno(), 80 + i, 2)
            ring.submit_and_wait(0)
            [(ud, res, flags)] = wait_for(ring, 1)
            bid = flags >> IORING_CQE_BUFFER_SHIFT
            assert pool.memory[bid * 64 : bid * 64 + res] == chunk
            bids.append(bid)
        b.sendall(b"three")
        ring.prep_recv_select(a.fileno(), 82, 2)
        ring.submit_and_wait(0)
        assert wait_for(ring, 1) == [(82, -errno.ENOBUFS, 0)]  # the pool is empty
        for bid in bids:
            note(bid)
        flush()  # both back, one tail store
        ring.prep_recv_select(a.fileno(), 83, 2)
        ring.submit_and_wait(0)
        [(ud, res, flags)] = wait_for(ring, 1)
        assert (ud, res) == (83, 5) and flags & IORING_CQE_F_BUFFER


def test_batch_recycler_in_any_order(ring, pair):
    """flush() only moves the tail when buffers come back in the order the
    kernel took them; in any other order it rewrites the entries, and
    either way each recv lands in a buffer that is free and says which."""
    if not ring.supports_multishot_recv:
        pytest.skip("provided buffer rings not supported")
    a, b = pair
    with BufferRing(ring, 3, 4, 64) as pool:
        note, flush = pool.batch_recycler()
        seen = []
        orders = (list, lambda bids: bids[::-1], list, lambda bids: bids[1:] + bids[:1])
        for round_no, order in enumerate(orders):
            bids = []
            for i in range(4):
                chunk = b"%d.%d" % (round_no, i)
                b.sendall(chunk)
                ring.prep_recv_select(a.fileno(), 100 + i, 3)
                ring.submit_and_wait(0)
                [(ud, res, flags)] = wait_for(ring, 1)
                assert res == len(chunk) and flags & IORING_CQE_F_BUFFER, (ud, res, flags)
                bid = flags >> IORING_CQE_BUFFER_SHIFT
                assert pool.memory[bid * 64 : bid * 64 + res] == chunk
                bids.append(bid)
            assert sorted(bids) == [0, 1, 2, 3]  # all four, each once
            seen.append(bids)
            for bid in order(bids):
                note(bid)
            flush()
        assert seen[1] == seen[0]  # given back in order: the same ring entries, unchanged
        assert seen[2] == seen[1][::-1]  # given back reversed: taken reversed


def test_quick_sends(ring):
    """A quick send that goes out whole posts nothing; on a full socket it
    fails inside the enter with -EAGAIN; a send larger than the room left
    comes back with the count it sent."""
    if not ring.supports_quick_send:
        pytest.skip("quick sends not supported by this kernel")
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        template = ring.quick_send_template(a.fileno(), 7)

        def send(data):
            ring.prep_quick_sends([(template, data)])

        data = b"quick" * 100
        send(data)
        ring.submit_and_wait(0)
        assert ring.reap() == []  # success: no completion at all
        assert b.recv(1000) == data
        big = os.urandom(1 << 20)
        send(big)
        ring.submit_and_wait(0)
        [(ud, res, _flags)] = ring.reap()  # at once: the request was not parked
        assert ud == 7 and 0 < res < len(big), res
        send(big)
        ring.submit_and_wait(0)
        assert ring.reap() == [(7, -errno.EAGAIN, 0)]
        b.setblocking(False)
        received = bytearray()
        with contextlib.suppress(BlockingIOError):
            while True:
                received += b.recv(1 << 20)
        assert bytes(received) == big[:res]  # the short send's bytes, in order, and no more
    finally:
        a.close()
        b.close()


def test_prep_quick_sends_fills_and_wraps_a_small_sq():
    """More quick sends than the SQ has slots, over several rounds: the SQ
    is submitted when full, the indices wrap, every byte arrives in order."""
    ring = Ring(4)
    try:
        if not ring.supports_quick_send:
            pytest.skip("quick sends not supported by this kernel")
        pairs = [socket.socketpair() for _ in range(10)]
        templates = [ring.quick_send_template(a.fileno(), 100 + i) for i, (a, _) in enumerate(pairs)]
        for round_no in range(5):
            data = [b"%d:%d;" % (round_no, i) for i in range(10)]
            ring.prep_quick_sends(zip(templates, data, strict=True))
            ring.submit_and_wait(0)
            assert ring.reap() == []  # all went out whole
            for (_, b), chunk in zip(pairs, data, strict=True):
                assert recv_exactly_socket(b, len(chunk)) == chunk
        for a, b in pairs:
            a.close()
            b.close()
    finally:
        ring.close()


def recv_exactly_socket(sock, n):
    buf = b""
    sock.settimeout(5)
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk
        buf += chunk
    return buf
