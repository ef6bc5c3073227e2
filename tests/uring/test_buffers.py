"""Buffers handed to the kernel, and the provided-buffer ring (iomodels.uring.buffers)."""

import errno
import gc
import weakref

import pytest

from iomodels.uring import (
    IORING_CQE_BUFFER_SHIFT,
    IORING_CQE_F_BUFFER,
    IORING_CQE_F_MORE,
    BufferRing,
    Ring,
)

from .support import Buf, needs_io_uring, wait_for

pytestmark = needs_io_uring


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
