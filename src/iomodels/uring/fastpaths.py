"""The ring's fast paths: sends queued with as little Python as possible.

These are :class:`~iomodels.uring.ring.Ring` methods (ring.py binds them),
written here because they are hand-inlined: they write SQEs without going
through ``Ring._prep``, testing the cached SQ head as it does and calling
``Ring._next_sqe_when_full`` only when that test says full.  An event loop
runs them once per request, where a Python frame, a keyword argument or a
dict lookup is a visible share of the cost.  The figures that justified each one are in
BENCHMARKS.md, sections "The ring layer's unit costs"
(``bench/uring_dispatch.py --unit-costs``) and "io_uring against epoll and
uvloop" (the model's Python per request, ``bench/uring_dispatch.py``).
tests/uring/test_fastpaths.py checks that each writes the same SQE as the
plain path.

Fewer completions
-----------------
A completion costs Python time to unpack and dispatch, so the cheapest one is
the one never posted.  ``quick_send_template`` / ``prep_quick_sends`` queue
sends that post a CQE only if they fail or fall short: ``MSG_DONTWAIT`` makes
the kernel fail a send it cannot do at once (``-EAGAIN``) instead of parking
it, ``MSG_WAITALL`` makes a short send a failure whose ``res`` is the count
sent, and ``IOSQE_CQE_SKIP_SUCCESS`` (``IORING_FEAT_CQE_SKIP``, 5.17+) drops
the CQE of a success.  Such a send is issued inline while ``io_uring_enter``
submits it, so when the enter returns its buffer is free and any failure is
in the CQ.  ``supports_quick_send`` (features.py) checks that behaviour live (a
kernel that parked it anyway would break both promises).
``submit_and_wait`` keeps the other half: every SQE queued before it is
submitted when it returns.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .abi import (
    BYTES_OFF,
    IORING_OP_SEND,
    IOSQE_CQE_SKIP_SUCCESS,
    SQE,
    SQE_ADDR_LEN,
    SQE_ADDR_OFF,
    SQE_SHIFT,
    SQE_SIZE,
    U32_MASK,
)

if TYPE_CHECKING:
    from .ring import Ring

# A "quick" send: fail rather than wait, fail if short, no SIGPIPE.
QUICK_MSG_FLAGS = socket.MSG_DONTWAIT | socket.MSG_WAITALL | socket.MSG_NOSIGNAL


def quick_sqe(fd: int, user_data: int) -> bytes:
    """The 64 bytes of a quick send on ``fd``, address and length 0."""
    return SQE.pack(
        # opcode, flags, ioprio, fd, off, addr, len, op_flags
        IORING_OP_SEND, IOSQE_CQE_SKIP_SUCCESS, 0, fd, 0, 0, 0, QUICK_MSG_FLAGS,
        # user_data, buf_index, personality, file_index, addr3, pad2
        user_data, 0, 0, 0, 0, 0,
    )  # fmt: skip


def unmanaged_send_preparer(ring: Ring) -> Callable[[int, bytes, int, int], None]:
    """``prep_send(fd, data, user_data, offset)`` for an event loop's hot path.

    Unlike :meth:`prep_send`, the ring does not record the buffer: the
    caller keeps ``data`` (a ``bytes`` object) alive until the send's final
    completion, as a transport does with its one send in flight.  While the
    ring's buffer table is empty, :meth:`reap` does not walk the completions
    in Python to retire buffers.  ``MSG_NOSIGNAL``.  Falls back to
    :meth:`prep_send` where the bytes layout is unknown.
    """
    if BYTES_OFF is None:  # pragma: no cover - not CPython-like
        prep = ring.prep_send

        def prep_send_managed(fd: int, data: bytes, user_data: int, offset: int = 0) -> None:
            prep(fd, data, user_data, offset=offset)

        return prep_send_managed
    pack, sqes, bytes_off, op_send = SQE.pack_into, ring._sqes, BYTES_OFF, IORING_OP_SEND
    msg_flags = socket.MSG_NOSIGNAL
    entries, mask, next_sqe = ring.sq_entries, ring._sq_mask, ring._next_sqe_when_full

    def prep_send(fd: int, data: bytes, user_data: int, offset: int = 0) -> None:
        tail = ring._sq_tail
        if (tail - ring._sq_head) & U32_MASK < entries:  # room, as far as we know (as Ring._prep)
            ring._sq_tail = (tail + 1) & U32_MASK
            slot = (tail & mask) << SQE_SHIFT
        else:
            slot = next_sqe()
        pack(
            sqes, slot,
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            op_send, 0, 0, fd, 0, id(data) + bytes_off + offset, len(data) - offset, msg_flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

    return prep_send


def quick_send_template(ring: Ring, fd: int, user_data: int) -> bytes:
    """The SQE of a *quick send* on ``fd``, for :meth:`prep_quick_sends`.

    A quick send completes inside the enter that submits it and posts a CQE
    only if it did not send everything: ``MSG_DONTWAIT`` makes io_uring fail
    it with ``-EAGAIN`` where it would otherwise park it until the socket is
    writable (the request gets ``REQ_F_NOWAIT``); ``MSG_WAITALL`` turns a
    short send into a failure whose ``res`` is the count sent;
    ``IOSQE_CQE_SKIP_SUCCESS`` drops the CQE of a send that went out whole.
    So once the next enter has returned, its bytes are no longer needed and
    the send is either done (no CQE) or its CQE (``-EAGAIN``, a short count,
    or an error) is among the next reap's.  Check
    :attr:`supports_quick_send` first.
    """
    if BYTES_OFF is None or not ring.supports_quick_send:
        raise OSError(errno.EOPNOTSUPP, "quick sends are not supported here")
    return quick_sqe(fd, user_data)


def prep_quick_sends(ring: Ring, sends: Iterable[tuple[bytes, bytes]]) -> None:
    """Queue quick sends, given as ``(template, data)`` pairs
    (:meth:`quick_send_template`; ``data`` a ``bytes`` object).

    Made for an event loop that stages its replies during a turn and queues
    them all just before its enter: per send one 64-byte copy of the
    template and one patch of address and length, in one loop here, with
    the ring's tail kept in a local.  The caller keeps each ``data`` alive
    until the next enter has returned, and queues at most one quick send
    per socket per enter (two could reorder if the first comes back short).
    """
    sqes, mask, entries = ring._sqes, ring._sq_mask, ring.sq_entries
    patch, bytes_off = SQE_ADDR_LEN.pack_into, BYTES_OFF
    tail, head = ring._sq_tail, ring._sq_head
    if hasattr(sends, "__len__") and len(sends) <= entries - ((tail - head) & U32_MASK):
        # Room for all of them as far as we know (the usual turn): no test
        # per send, the tail wrapped once at the end.
        for template, data in sends:
            slot = (tail & mask) << SQE_SHIFT
            tail += 1
            sqes[slot : slot + SQE_SIZE] = template
            patch(sqes, slot + SQE_ADDR_OFF, id(data) + bytes_off, len(data))
        ring._sq_tail = tail & U32_MASK
        return
    for template, data in sends:
        if (tail - head) & U32_MASK < entries:  # room, as far as we know (as Ring._prep)
            slot = (tail & mask) << SQE_SHIFT
            tail = (tail + 1) & U32_MASK
        else:  # full as far as we know: refresh the head, or submit
            ring._sq_tail = tail
            slot = ring._next_sqe_when_full()
            tail, head = ring._sq_tail, ring._sq_head
        sqes[slot : slot + SQE_SIZE] = template
        patch(sqes, slot + SQE_ADDR_OFF, id(data) + bytes_off, len(data))
    ring._sq_tail = tail
