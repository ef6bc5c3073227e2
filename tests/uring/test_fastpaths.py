"""The event loop's fast paths (iomodels.uring.fastpaths)."""

import contextlib
import errno
import os
import socket

import pytest

from iomodels import uring
from iomodels.uring import (
    Ring,
    abi,
    fastpaths,
)

from .support import needs_io_uring, recv_exactly_socket, wait_for

pytestmark = needs_io_uring


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


def _queued_sqe(ring, prep):
    """The 64 bytes ``prep()`` queues, taken back out of the SQ unsubmitted.

    The slot is filled with 0xff first: every field must be written."""
    tail = ring._sq_tail
    slot = (tail & ring._sq_mask) * abi.SQE_SIZE
    ring._sqes[slot : slot + abi.SQE_SIZE] = b"\xff" * abi.SQE_SIZE
    prep()
    assert ring._sq_tail == (tail + 1) & abi.U32_MASK
    raw = bytes(ring._sqes[slot : slot + abi.SQE_SIZE])
    ring._sq_tail = tail  # rewind: nothing is submitted
    ring._keep.clear()
    return raw


def test_fast_paths_write_the_plain_paths_sqe(ring):
    """The fast paths write their SQEs themselves: byte for byte what
    Ring.prep_send (through Ring._prep) writes for the same send."""
    data = b"0123456789"
    plain = _queued_sqe(ring, lambda: ring.prep_send(5, data, 9, offset=3))
    unmanaged = ring.unmanaged_send_preparer()
    assert _queued_sqe(ring, lambda: unmanaged(5, data, 9, 3)) == plain
    quick_plain = _queued_sqe(
        ring,
        lambda: ring.prep_send(
            5, data, 9, msg_flags=fastpaths.QUICK_MSG_FLAGS, sqe_flags=abi.IOSQE_CQE_SKIP_SUCCESS
        ),
    )
    template = fastpaths.quick_sqe(5, 9)
    assert _queued_sqe(ring, lambda: ring.prep_quick_sends([(template, data)])) == quick_plain
