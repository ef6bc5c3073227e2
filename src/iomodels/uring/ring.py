"""The ring: set it up, queue SQEs, submit in batches, reap CQEs.

The rings
---------
Three areas of memory are shared between the kernel and us, mapped with
``mmap`` on the ring file descriptor: the *submission queue* (SQ) ring (head,
tail, mask, flags and an index array), the array of 64-byte *submission queue
entries* (SQEs), and the *completion queue* (CQ) ring (head, tail, mask and
16-byte *CQEs*).  We own the SQ tail and the CQ head; the kernel owns the SQ
head and the CQ tail.  Indices are free-running unsigned 32-bit counters: the
slot is ``index & ring_mask`` and the fill level is ``(tail - head) mod
2**32``, which stays right when the counters wrap past ``2**32 - 1``.  We fill
the SQ index array once with the identity (slot i -> SQE i) and never touch it
again, so queueing an operation is one ``struct.pack_into`` into the SQE slot
(:meth:`Ring._prep`: liburing's ``io_uring_get_sqe`` and
``io_uring_prep_rw`` in one); the new tail is published once
per batch.

Memory ordering: the kernel reads our SQ tail with acquire and writes its CQ
tail with release semantics.  On x86-64 (TSO) ordinary loads are not reordered
with other loads and ordinary stores not with other stores, so plain 32-bit
loads/stores through a ``memoryview`` suffice: SQEs written before the tail
store are visible when the kernel sees the tail; CQEs are read after the tail
load; the head store comes after those reads.  Each access is an opaque C call
in CPython, so the interpreter cannot reorder them either.  This layer is
x86-64 only (its syscall numbers too); other architectures would need real
barriers.

Threading: a ring created with ``SINGLE_ISSUER`` may only be used from the
thread that created it (others get ``EEXIST``).  Use one ring per thread.

Size: this file is over the house's ~600 lines because it is one class whose
SQ half and CQ half share the mapped state and the buffer/backlog
bookkeeping (as liburing's queue.c and setup.c share ``struct io_uring``);
what is not that core lives beside it (fastpaths.py, features.py,
buffers.py).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import time

# The package itself, for its ``_syscall``: every system call below looks it
# up there when it is made, so that tests can put a failing kernel in its
# place (tests/models/test_io_uring_enter_failure.py).  Only used at call
# time, so importing the half-initialised package here is fine.
from iomodels import uring as _pkg

from . import abi, fastpaths, features
from .abi import (
    ARGSZ_0,
    CQE,
    CQE_SIZE,
    IORING_ACCEPT_MULTISHOT,
    IORING_CQE_F_MORE,
    IORING_ENTER_EXT_ARG,
    IORING_ENTER_GETEVENTS,
    IORING_OP_ACCEPT,
    IORING_OP_ASYNC_CANCEL,
    IORING_OP_CLOSE,
    IORING_OP_CONNECT,
    IORING_OP_NOP,
    IORING_OP_POLL_ADD,
    IORING_OP_READ,
    IORING_OP_RECV,
    IORING_OP_RECVMSG,
    IORING_OP_SEND,
    IORING_OP_SENDMSG,
    IORING_OP_SHUTDOWN,
    IORING_OP_SPLICE,
    IORING_OP_WRITE,
    IORING_RECV_MULTISHOT,
    IORING_SQ_CQ_OVERFLOW,
    IORING_SQ_TASKRUN,
    IOSQE_BUFFER_SELECT,
    NR_ENTER,
    SQE,
    SQE_SHIFT,
    U32_MASK,
    UD_LIVE_PROBE,
    UD_TIMEOUT,
    USER_DATA_RESERVED,
    get_errno,
    oserror,
)
from .buffers import GRAVEYARD, buffer_span

_pack_sqe = SQE.pack_into
_U64 = (1 << 64) - 1  # an offset of -1 ("the file position") as the kernel's u64

# Setup flags tried in order; SUBMIT_ALL makes one enter submit every queued
# SQE even if one of them fails at submission time.
SETUP_LADDER = (
    abi.IORING_SETUP_SUBMIT_ALL | abi.IORING_SETUP_SINGLE_ISSUER | abi.IORING_SETUP_DEFER_TASKRUN,
    abi.IORING_SETUP_SUBMIT_ALL | abi.IORING_SETUP_COOP_TASKRUN,
    abi.IORING_SETUP_SUBMIT_ALL,
    0,
)


def u32_diff(a: int, b: int) -> int:
    """``a - b`` in unsigned 32-bit arithmetic (ring indices wrap at 2**32).

    ``u32_diff(0, 2**32 - 1) == 1``: a tail that wrapped to 0 is one past a
    head at ``2**32 - 1``.
    """
    return (a - b) & U32_MASK


def read_cqes(view: memoryview, cqes_off: int, head: int, tail: int, mask: int) -> list[tuple[int, int, int]]:
    """Unpack the CQEs in ``[head, tail)`` (u32 indices) from a CQ ring view.

    At most two contiguous runs (before and after the slot index wraps to 0),
    each unpacked by one ``iter_unpack`` over a zero-copy memoryview slice.
    """
    n = (tail - head) & U32_MASK
    if not n:
        return []
    start = head & mask
    first = min(n, mask + 1 - start)
    base = cqes_off + start * CQE_SIZE
    out = list(CQE.iter_unpack(view[base : base + first * CQE_SIZE]))
    if first < n:
        out += CQE.iter_unpack(view[cqes_off : cqes_off + (n - first) * CQE_SIZE])
    return out


class Ring:
    """One io_uring instance: queue SQEs, submit in batches, reap CQEs.

    ``Ring(entries)`` creates an SQ of ``entries`` (rounded up to a power of
    two by the kernel) and a CQ of ``cq_entries`` (default: twice that).
    ``flags`` are extra ``IORING_SETUP_*`` flags OR-ed into every attempt;
    ``try_flags=False`` skips the taskrun ladder (uses ``flags`` only).

    Setup flags are probed, never assumed: ``SINGLE_ISSUER | DEFER_TASKRUN``
    (completions are produced only when we enter with GETEVENTS, in our own
    task: no interrupts, no extra wake-ups), then ``COOP_TASKRUN``, then
    nothing.  What the kernel supports beyond that is asked (``supports``)
    or checked live (the ``supports_*`` properties, features.py).

    Typical loop::

        ring.prep_recv(fd, buf, user_data=1)
        ring.submit_and_wait(1)
        for user_data, res, flags in ring.reap():
            ...
    """

    def __init__(
        self, entries: int = 256, *, cq_entries: int = 0, flags: int = 0, try_flags: bool = True
    ) -> None:
        self._closed = True  # until fully set up: close() must be safe
        self._mms: list[mmap.mmap] = []
        self._views: list[memoryview] = []
        self.fd = -1
        ladder = SETUP_LADDER if try_flags else (0,)
        if cq_entries:
            flags |= abi.IORING_SETUP_CQSIZE
        params = abi.Params()
        last_err = errno.EINVAL
        for extra in ladder:
            params = abi.Params(flags=flags | extra, cq_entries=cq_entries)
            fd = _pkg._syscall(abi.NR_SETUP, entries, ctypes.byref(params))
            if fd >= 0:
                break
            last_err = get_errno()
            if last_err != errno.EINVAL:  # EPERM, ENOSYS, ENOMEM: no use
                break
        if fd < 0:
            raise oserror(last_err, "io_uring_setup")
        self.fd = fd
        self.setup_flags = params.flags
        self._taskrun_flag = bool(params.flags & abi.IORING_SETUP_TASKRUN_FLAG)
        self.features = params.features
        self.sq_entries = params.sq_entries
        self.cq_entries = params.cq_entries
        try:
            self._map(params)
        except BaseException:
            self._unmap()
            os.close(fd)
            self.fd = -1
            raise
        self._closed = False
        self._ext_arg = bool(self.features & abi.IORING_FEAT_EXT_ARG)
        # Reused argument blocks for timed waits (the kernel copies them).
        self._ts = abi.Timespec()
        self._geta = abi.GeteventsArg(sigmask=0, sigmask_sz=abi.NSIG_BYTES, ts=ctypes.addressof(self._ts))
        self._geta_ref = ctypes.byref(self._geta)
        self._geta_size = ctypes.c_size_t(ctypes.sizeof(abi.GeteventsArg))
        # user_data -> object keeping a buffer alive until its completion.
        self._keep: dict[int, object] = {}
        # Completions reaped internally (on EBUSY, during live checks) that
        # the caller has not seen yet: returned first by reap().
        self._backlog: list[tuple[int, int, int]] = []
        self._internal = 0  # internal ops whose CQE is still due
        self._timeouts = 0  # fallback timeout SQEs still armed
        self._probe_ops: bytes | None = None  # register_probe()'s answer
        self._checked: dict[str, bool] = {}  # features.py's live checks, by name
        self._live_result: int | None = None  # set by _retire for live checks

    # -- setup / teardown ------------------------------------------------

    def _map(self, p: abi.Params) -> None:
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        mflags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * CQE_SIZE
        if self.features & abi.IORING_FEAT_SINGLE_MMAP:
            # One mapping serves both rings (kernel 5.4+).
            sq_mm = cq_mm = mmap.mmap(
                self.fd, max(sq_size, cq_size), mflags, prot, offset=abi.IORING_OFF_SQ_RING
            )
            self._mms.append(sq_mm)
        else:
            sq_mm = mmap.mmap(self.fd, sq_size, mflags, prot, offset=abi.IORING_OFF_SQ_RING)
            self._mms.append(sq_mm)
            cq_mm = mmap.mmap(self.fd, cq_size, mflags, prot, offset=abi.IORING_OFF_CQ_RING)
            self._mms.append(cq_mm)
        sqes = mmap.mmap(self.fd, p.sq_entries * abi.SQE_SIZE, mflags, prot, offset=abi.IORING_OFF_SQES)
        self._mms.append(sqes)
        # u32 views for the indices; a byte view for unpacking CQEs.
        self._sq32 = memoryview(sq_mm).cast("I")
        self._cq32 = self._sq32 if cq_mm is sq_mm else memoryview(cq_mm).cast("I")
        self._cqb = memoryview(cq_mm)
        self._sqes = memoryview(sqes)
        self._views += [self._sq32, self._cq32, self._cqb, self._sqes]
        so, co = p.sq_off, p.cq_off
        self._sq_khead = so.head // 4
        self._sq_ktail = so.tail // 4
        self._sq_kflags = so.flags // 4
        self._sq_mask = self._sq32[so.ring_mask // 4]
        self._cq_khead = co.head // 4
        self._cq_ktail = co.tail // 4
        self._cq_mask = self._cq32[co.ring_mask // 4]
        self._cqes_off = co.cqes
        # Identity SQ index array: slot i always names SQE i.
        arr = so.array // 4
        for i in range(p.sq_entries):
            self._sq32[arr + i] = i
        self._sq_tail = self._sq32[self._sq_ktail]
        self._sq_head = self._sq32[self._sq_khead]
        self._cq_head = self._cq32[self._cq_khead]

    def _unmap(self) -> None:
        for v in self._views:
            v.release()
        self._views = []
        for m in self._mms:
            m.close()
        self._mms = []

    def close(self) -> None:
        """Cancel what is in flight, then unmap the rings and close the fd.

        Idempotent.  Operations still holding a buffer are cancelled and
        reaped first (bounded to ~1 s), so no buffer is freed while the
        kernel may still write into it; any left over are kept forever.
        """
        if self._closed:
            return
        try:
            if self._keep:
                self._drain_in_flight(1.0)
        except OSError:
            pass
        finally:
            self._closed = True
            if self._keep:
                GRAVEYARD.append(self._keep)
            self._keep = {}
            self._unmap()
            os.close(self.fd)
            self.fd = -1

    def _drain_in_flight(self, budget: float) -> None:
        deadline = time.monotonic() + budget
        for ud in list(self._keep):
            self.prep_cancel(ud, abi.UD_LIVE_CANCEL)
            self._internal += 1
        while self._keep and time.monotonic() < deadline:
            self.submit_and_wait(1, timeout=0.05)
            self._backlog.extend(self.reap())  # nobody will read them

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight_buffers(self) -> int:
        """How many operations still hold a buffer (await a completion)."""
        return len(self._keep)

    def holds_buffer(self, user_data: int) -> bool:
        return user_data in self._keep

    # -- queueing SQEs ---------------------------------------------------

    def _next_sqe_when_full(self) -> int:
        """Byte offset of the next free SQE when our cached copy of the
        kernel's head says the SQ is full; the local tail advances.

        The head is re-read; if the SQ really is full, the queued SQEs are
        submitted first.  Only ``_prep`` and the fast paths (fastpaths.py)
        call this, when their test of the cached head says full: the test is
        written in each of them (a call per SQE would cost more than the
        SQE's packing), what follows it only here (liburing's
        ``io_uring_get_sqe``).
        """
        tail = self._sq_tail
        self._sq_head = self._sq32[self._sq_khead]
        if (tail - self._sq_head) & U32_MASK >= self.sq_entries:
            self.submit_and_wait(0)
            self._sq_head = self._sq32[self._sq_khead]
            if (tail - self._sq_head) & U32_MASK >= self.sq_entries:
                raise oserror(errno.EBUSY, "io_uring SQ full")
        self._sq_tail = (tail + 1) & U32_MASK
        return (tail & self._sq_mask) << SQE_SHIFT

    def _prep(
        self,
        opcode: int,
        fd: int,
        user_data: int,
        sqe_flags: int = 0,
        addr: int = 0,
        nbytes: int = 0,
        op_flags: int = 0,
        ioprio: int = 0,
        off: int = 0,
        buf_index: int = 0,
    ) -> None:
        """Queue one SQE (liburing's ``io_uring_prep_rw``): every prep_*
        method comes here.  All fields are written, so stale bytes from the
        slot's last use cannot leak into the new request."""
        tail = self._sq_tail
        if (tail - self._sq_head) & U32_MASK < self.sq_entries:  # room, as far as we know
            self._sq_tail = (tail + 1) & U32_MASK
            slot = (tail & self._sq_mask) << SQE_SHIFT
        else:
            slot = self._next_sqe_when_full()
        _pack_sqe(
            self._sqes, slot,
            opcode, sqe_flags, ioprio, fd, off, addr, nbytes, op_flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, buf_index, 0, 0, 0, 0,
        )  # fmt: skip

    def _keep_buffer(self, user_data: int, keeper) -> None:
        if user_data in self._keep:
            # Two in-flight operations with one user_data would free the
            # first buffer when the second is reaped (or vice versa).
            raise ValueError(f"user_data {user_data} already has a buffer in flight")
        self._keep[user_data] = keeper

    def _prep_on_buffer(self, opcode, fd, buf, writable, user_data, offset, nbytes, msg_flags, sqe_flags):
        """Queue a recv or send on ``buf[offset:offset + nbytes]``, keeping
        ``buf`` alive (and unmovable) until its final completion."""
        addr, nbytes, keeper = buffer_span(buf, writable, offset, nbytes)
        self._keep_buffer(user_data, keeper)
        self._prep(opcode, fd, user_data, sqe_flags, addr, nbytes, msg_flags)

    def pending_sqes(self) -> int:
        """SQEs queued but not yet consumed by the kernel."""
        return (self._sq_tail - self._sq32[self._sq_khead]) & U32_MASK

    def needs_enter(self) -> bool:
        """Whether a non-blocking turn must call ``io_uring_enter``.

        With ``IORING_SETUP_TASKRUN_FLAG`` the kernel flags completions it has
        not posted yet (``IORING_SQ_TASKRUN``); when that flag is clear and no
        SQE is queued, the CQ in shared memory is all there is, and the enter
        (a ctypes call, ~1-2 µs) can be skipped.  Without the setup flag the
        kernel says nothing, so every turn enters.
        """
        return (
            not self._taskrun_flag
            or (self._sq_tail - self._sq32[self._sq_khead]) & U32_MASK != 0
            or bool(self._sq32[self._sq_kflags] & IORING_SQ_TASKRUN)
        )

    def prep_nop(self, user_data: int, sqe_flags: int = 0) -> None:
        self._prep(IORING_OP_NOP, -1, user_data, sqe_flags)

    def prep_accept(
        self,
        fd: int,
        user_data: int,
        *,
        multishot: bool = False,
        flags: int = socket.SOCK_CLOEXEC,
        sqe_flags: int = 0,
    ) -> None:
        """Accept a connection; ``res`` is the new fd (peer address not read).

        ``multishot``: one SQE, one CQE per accepted connection, each with
        ``IORING_CQE_F_MORE`` while the request stays armed (kernel 5.19+;
        see ``supports_multishot_accept``).
        """
        ioprio = IORING_ACCEPT_MULTISHOT if multishot else 0
        self._prep(IORING_OP_ACCEPT, fd, user_data, sqe_flags, op_flags=flags, ioprio=ioprio)

    def prep_recv(
        self,
        fd: int,
        buf,
        user_data: int,
        *,
        nbytes: int | None = None,
        offset: int = 0,
        msg_flags: int = 0,
        sqe_flags: int = 0,
    ) -> None:
        """Receive into ``buf[offset:offset + nbytes]`` (a writable buffer).

        The ring keeps ``buf`` referenced (and, for a bytearray, unresizable)
        until this ``user_data``'s completion has been reaped.
        """
        self._prep_on_buffer(IORING_OP_RECV, fd, buf, True, user_data, offset, nbytes, msg_flags, sqe_flags)

    def prep_recv_select(
        self,
        fd: int,
        user_data: int,
        buf_group: int,
        *,
        multishot: bool = False,
        msg_flags: int = 0,
        sqe_flags: int = 0,
    ) -> None:
        """Receive into a buffer the kernel picks from a ``BufferRing``.

        The CQE has ``IORING_CQE_F_BUFFER`` and the buffer id in
        ``flags >> IORING_CQE_BUFFER_SHIFT``.  ``multishot`` (kernel 6.0+)
        keeps the request armed: a CQE per arrival while ``F_MORE`` is set;
        it ends with ``-ENOBUFS`` when the group runs dry (re-arm then).
        """
        ioprio = IORING_RECV_MULTISHOT if multishot else 0
        flags = sqe_flags | IOSQE_BUFFER_SELECT
        self._prep(IORING_OP_RECV, fd, user_data, flags, 0, 0, msg_flags, ioprio, 0, buf_group)

    def prep_send(
        self,
        fd: int,
        buf,
        user_data: int,
        *,
        nbytes: int | None = None,
        offset: int = 0,
        msg_flags: int = socket.MSG_NOSIGNAL,
        sqe_flags: int = 0,
    ) -> None:
        """Send ``buf[offset:offset + nbytes]``; ``res`` is bytes sent.

        A send may be short.  Keep at most one send in flight per socket (or
        link them with ``IOSQE_IO_LINK``): two unlinked sends can reorder.
        ``MSG_NOSIGNAL`` by default: a reset peer gives ``-EPIPE``, no signal.
        For an event loop's hot path see :meth:`unmanaged_send_preparer`.
        """
        self._prep_on_buffer(IORING_OP_SEND, fd, buf, False, user_data, offset, nbytes, msg_flags, sqe_flags)

    def prep_close(self, fd: int, user_data: int, sqe_flags: int = 0) -> None:
        """Close ``fd`` asynchronously (the Python socket must be detached)."""
        self._prep(IORING_OP_CLOSE, fd, user_data, sqe_flags)

    def prep_shutdown(self, fd: int, how: int, user_data: int, sqe_flags: int = 0) -> None:
        self._prep(IORING_OP_SHUTDOWN, fd, user_data, sqe_flags, nbytes=how)

    def prep_cancel(
        self, target_user_data: int, user_data: int, *, flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """Cancel the request(s) with ``target_user_data``.

        This SQE completes with 0 (found), ``-ENOENT`` or ``-EALREADY``; the
        target completes separately with ``-ECANCELED`` (its buffer is
        released only then).  ``flags=IORING_ASYNC_CANCEL_ALL`` cancels every
        match (5.19+).
        """
        self._prep(IORING_OP_ASYNC_CANCEL, -1, user_data, sqe_flags, target_user_data, 0, flags)

    def prep_timeout(
        self, seconds: float, user_data: int, *, count: int = 0, flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """A timer: completes with ``-ETIME`` after ``seconds`` (or with 0
        once ``count`` other completions have been posted)."""
        ts = abi.timespec(seconds)
        self._keep_buffer(user_data, ts)
        self._prep(abi.IORING_OP_TIMEOUT, -1, user_data, sqe_flags, ctypes.addressof(ts), 1, flags, off=count)

    # -- operations on memory the caller keeps ------------------------------
    #
    # These take addresses, not buffers: the ring keeps nothing for them, and
    # the caller holds the memory (buffer, sockaddr, msghdr and its iovec)
    # until the operation's final completion is reaped, as an asyncio
    # proactor keeps its operations' buffers in its own cache
    # (iomodels.aio.proactor).  ``buffers.buffer_span`` gives an address and
    # the object that keeps it.

    def prep_send_at(
        self, fd: int, addr: int, nbytes: int, user_data: int, *, msg_flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """``send(2)`` of ``nbytes`` at ``addr`` (to continue a short send
        where it stopped, without a new buffer object)."""
        self._prep(IORING_OP_SEND, fd, user_data, sqe_flags, addr, nbytes, msg_flags)

    def prep_recv_at(
        self, fd: int, addr: int, nbytes: int, user_data: int, *, msg_flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """``recv(2)`` into ``nbytes`` at ``addr``: :meth:`prep_recv` on
        memory the caller keeps, so that the ring's buffer table stays empty
        and :meth:`reap` need not walk the completions to retire buffers."""
        self._prep(IORING_OP_RECV, fd, user_data, sqe_flags, addr, nbytes, msg_flags)

    def prep_poll_add(self, fd: int, events: int, user_data: int, sqe_flags: int = 0) -> None:
        """One-shot poll: completes with the ready ``POLL*`` mask (``res``)."""
        self._prep(IORING_OP_POLL_ADD, fd, user_data, sqe_flags, op_flags=events)

    def prep_read(
        self, fd: int, addr: int, nbytes: int, user_data: int, *, offset: int = -1, sqe_flags: int = 0
    ) -> None:
        """``read(2)`` into ``nbytes`` at ``addr``; ``offset`` -1 means "at
        and advancing the file position", the only offset a pipe takes
        besides 0."""
        self._prep(IORING_OP_READ, fd, user_data, sqe_flags, addr, nbytes, off=offset & _U64)

    def prep_write(
        self, fd: int, addr: int, nbytes: int, user_data: int, *, offset: int = -1, sqe_flags: int = 0
    ) -> None:
        """``write(2)`` of ``nbytes`` at ``addr`` (``offset`` as for
        :meth:`prep_read`)."""
        self._prep(IORING_OP_WRITE, fd, user_data, sqe_flags, addr, nbytes, off=offset & _U64)

    def prep_connect(self, fd: int, addr: int, addrlen: int, user_data: int, sqe_flags: int = 0) -> None:
        """``connect(2)`` to the ``struct sockaddr`` at ``addr``
        (``addresses.sockaddr`` builds one); liburing puts its length in
        ``off``."""
        self._prep(IORING_OP_CONNECT, fd, user_data, sqe_flags, addr, 0, off=addrlen)

    def prep_sendmsg(
        self, fd: int, msg_addr: int, user_data: int, *, msg_flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """``sendmsg(2)`` with the ``struct msghdr`` at ``msg_addr``
        (``addresses.msghdr``)."""
        self._prep(IORING_OP_SENDMSG, fd, user_data, sqe_flags, msg_addr, 1, msg_flags)

    def prep_recvmsg(
        self, fd: int, msg_addr: int, user_data: int, *, msg_flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """``recvmsg(2)``: the kernel writes the data, the sender's address
        and its length into the msghdr's buffers."""
        self._prep(IORING_OP_RECVMSG, fd, user_data, sqe_flags, msg_addr, 1, msg_flags)

    def prep_splice(
        self,
        fd_in: int,
        off_in: int,
        fd_out: int,
        off_out: int,
        nbytes: int,
        user_data: int,
        *,
        splice_flags: int = 0,
        sqe_flags: int = 0,
    ) -> None:
        """``splice(2)`` of up to ``nbytes`` from ``fd_in`` to ``fd_out``
        (5.7+); one of them must be a pipe.  An offset of -1 means "the
        file position" (and is the one a pipe or socket takes).  No user
        memory at all: the kernel moves pages, which is how a file goes to a
        socket through the ring (file -> pipe -> socket, two linked
        splices)."""
        tail = self._sq_tail
        if (tail - self._sq_head) & U32_MASK < self.sq_entries:
            self._sq_tail = (tail + 1) & U32_MASK
            slot = (tail & self._sq_mask) << SQE_SHIFT
        else:
            slot = self._next_sqe_when_full()
        _pack_sqe(
            self._sqes, slot,
            IORING_OP_SPLICE, sqe_flags, 0, fd_out, off_out & _U64, off_in & _U64, nbytes, splice_flags,
            # user_data, buf_index, personality, splice_fd_in, addr3, pad2
            user_data, 0, 0, fd_in, 0, 0,
        )  # fmt: skip

    # The event loop's fast paths: the same SQEs written with less Python
    # per request (fastpaths.py says how and why).
    unmanaged_send_preparer = fastpaths.unmanaged_send_preparer
    quick_send_template = fastpaths.quick_send_template
    prep_quick_sends = fastpaths.prep_quick_sends

    # -- submitting and waiting ------------------------------------------

    def _enter(self, to_submit: int, min_complete: int, flags: int) -> int:
        """Raw io_uring_enter without a timeout: result, or ``-errno``."""
        ret = _pkg._syscall(NR_ENTER, self.fd, to_submit, min_complete, flags, None, ARGSZ_0)
        return ret if ret >= 0 else -get_errno()

    def submit_and_wait(self, min_complete: int = 0, timeout: float | None = None) -> int:
        """Submit every queued SQE and wait for ``min_complete`` CQEs.

        One ``io_uring_enter``, retried on a full CQ and when the kernel
        took fewer SQEs than queued (out of request memory): when this
        returns, every SQE queued before the call has been submitted.
        ``timeout`` in seconds bounds the wait.  GETEVENTS is always passed:
        with DEFER_TASKRUN that is what makes the kernel post completions,
        and it flushes overflowed CQEs.  Returns how many SQEs were
        submitted (the wait may have been interrupted or timed out: the
        caller just loops, reaping what is there).
        """
        if self._closed:
            raise ValueError("ring is closed")
        flags = IORING_ENTER_GETEVENTS
        arg = None
        argsz = ARGSZ_0
        if timeout is not None:
            if timeout < 0:
                timeout = 0
            if self._ext_arg:
                # The timeout rides on the enter call (kernel 5.11+).
                self._ts.tv_sec = int(timeout)
                self._ts.tv_nsec = int((timeout % 1) * 1e9)
                flags |= IORING_ENTER_EXT_ARG
                arg = self._geta_ref
                argsz = self._geta_size
            else:
                self._queue_internal_timeout(timeout)
        tail = self._sq_tail
        # Publish the batch: one store of the tail (TSO: the SQE stores
        # before it are visible first).
        self._sq32[self._sq_ktail] = tail
        to_submit = (tail - self._sq32[self._sq_khead]) & U32_MASK
        submitted = 0
        for _ in range(8):
            ret = _pkg._syscall(NR_ENTER, self.fd, to_submit, min_complete, flags, arg, argsz)
            if ret >= 0:
                submitted += ret
                if ret >= to_submit:
                    return submitted
                # Short (out of request memory): the rest is still in the SQ.
                # Callers rely on "queued before submit_and_wait returns means
                # submitted" (a quick send's bytes are freed after the next
                # reap), so submit the rest now, without waiting.
                self._backlog_reap()
                to_submit = (tail - self._sq32[self._sq_khead]) & U32_MASK
                min_complete = 0
                continue
            err = get_errno()
            if (err == errno.EINTR or err == errno.ETIME) and not (
                tail - self._sq32[self._sq_khead]
            ) & U32_MASK:
                return submitted  # interrupted or timed out, with everything submitted
            if err in (errno.EBUSY, errno.EAGAIN, errno.EINTR, errno.ETIME):
                # CQ full (older kernels refuse to submit then) or out of
                # request memory: take the completions out of the kernel's
                # way, keep them for reap(), and try again.
                if not self._backlog_reap():
                    self._enter(0, 0, IORING_ENTER_GETEVENTS)
                    self._backlog_reap()
                to_submit = (tail - self._sq32[self._sq_khead]) & U32_MASK
                min_complete = 0
                continue
            if err == errno.EBADR:
                raise oserror(err, "io_uring_enter: completions were dropped (CQ overflow without NODROP)")
            raise oserror(err, "io_uring_enter")
        raise oserror(errno.EBUSY, "io_uring_enter")

    def _backlog_reap(self) -> int:
        """Reap into the backlog; return how many CQEs were fresh."""
        before = len(self._backlog)
        self._backlog = self.reap()  # reap() returns the old backlog first
        return len(self._backlog) - before

    def _queue_internal_timeout(self, timeout: float) -> None:
        """Timed wait without EXT_ARG (kernels before 5.11): a timeout SQE.

        Its completion wakes the wait and is filtered out by reap().  An
        earlier one still pending is removed first so that it cannot cut a
        later, longer wait short.
        """
        if self._timeouts:
            self._prep(abi.IORING_OP_TIMEOUT_REMOVE, -1, abi.UD_TIMEOUT_REMOVE, addr=UD_TIMEOUT)
            self._internal += 1
        ts = abi.timespec(timeout)
        self._keep[UD_TIMEOUT] = ts  # the previous one is copied already
        self._prep(abi.IORING_OP_TIMEOUT, -1, UD_TIMEOUT, 0, ctypes.addressof(ts), 1)
        self._internal += 1
        self._timeouts += 1

    # -- reaping ---------------------------------------------------------

    def reap(self) -> list[tuple[int, int, int]]:
        """All available completions as ``(user_data, res, flags)``.

        Reads every CQE between our head and the kernel's tail, then stores
        the new head once.  If the kernel parked completions in its overflow
        list (CQ was full), flushes them with an enter and reads on, so none
        is lost.  Buffers of finished operations are released here.

        With DEFER_TASKRUN, completions appear only after an enter with
        GETEVENTS, i.e. after ``submit_and_wait``.
        """
        cq = self._cq32
        head = self._cq_head
        tail = cq[self._cq_ktail]
        if head != tail:
            out = read_cqes(self._cqb, self._cqes_off, head, tail, self._cq_mask)
            cq[self._cq_khead] = tail
            self._cq_head = tail
        else:
            out = []
        if self._sq32[self._sq_kflags] & IORING_SQ_CQ_OVERFLOW:
            out += self._flush_overflow()
        # Retire only fresh CQEs: backlog entries were retired when they were
        # read, and their user_data may have been reused since.
        if out and (self._keep or self._internal):
            out = self._retire(out)
        if self._backlog:
            out = self._backlog + out
            self._backlog = []
        return out

    def _flush_overflow(self) -> list[tuple[int, int, int]]:
        """Move overflowed CQEs into the ring (enter GETEVENTS) and read
        them, as many times as it takes."""
        out: list[tuple[int, int, int]] = []
        cq = self._cq32
        while self._sq32[self._sq_kflags] & IORING_SQ_CQ_OVERFLOW:
            ret = self._enter(0, 0, IORING_ENTER_GETEVENTS)
            if ret < 0 and ret not in (-errno.EINTR, -errno.EBUSY, -errno.EAGAIN):
                raise oserror(-ret, "io_uring_enter (overflow flush)")
            head = self._cq_head
            tail = cq[self._cq_ktail]
            if head == tail:
                break  # nothing moved: the caller will come back
            out += read_cqes(self._cqb, self._cqes_off, head, tail, self._cq_mask)
            cq[self._cq_khead] = tail
            self._cq_head = tail
        return out

    def _retire(self, cqes):
        """Release buffers of finished requests; drop internal CQEs."""
        keep = self._keep
        internal = self._internal
        out = []
        for cqe in cqes:
            ud = cqe[0]
            if not cqe[2] & IORING_CQE_F_MORE:
                keep.pop(ud, None)
            if ud >= USER_DATA_RESERVED and internal:
                internal -= 1
                if ud == UD_TIMEOUT:
                    self._timeouts -= 1
                elif ud == UD_LIVE_PROBE:
                    self._live_result = cqe[1]
                continue
            out.append(cqe)
        self._internal = internal
        return out

    # -- registration and probing ----------------------------------------

    def register(self, opcode: int, arg, nr_args: int) -> int:
        """Raw io_uring_register; raises OSError on failure."""
        ret = _pkg._syscall(abi.NR_REGISTER, self.fd, opcode, arg, nr_args)
        if ret < 0:
            raise oserror(get_errno(), f"io_uring_register({opcode})")
        return ret

    # What this kernel gave us, supports, or does: asked once, or checked
    # live once (features.py).
    setup_flag_names = property(features.setup_flag_names)
    feature_names = property(features.feature_names)
    register_probe = features.register_probe
    supports = features.supports
    supports_multishot_accept = property(features.supports_multishot_accept)
    supports_multishot_recv = property(features.supports_multishot_recv)
    supports_quick_send = property(features.supports_quick_send)
