"""A small io_uring ring layer over ctypes, mmap and struct (no compiled code).

Design note
===========

How io_uring waits and copies
-----------------------------
Every IO has two phases: *waiting* until the data (or the peer, or buffer
space) is there, and *copying* between the kernel and our buffer.  With
blocking IO the process sleeps through both; with readiness models (select,
poll, epoll, signal-driven IO) the kernel does the waiting and tells us "ready"
so that we do the copy ourselves with a second system call (``recv``).  With
io_uring we hand the kernel the *whole* operation up front -- "receive into
this buffer at this address" -- and it does both phases on its own.  By the
time we hear about it (a completion) the bytes are already in our buffer: the
process is never blocked in a read, and there is no second system call.  That
is why buffers must stay alive (and must not move) until the completion has
been reaped: the kernel writes into them asynchronously.  The ``Ring`` keeps a
reference to every buffer it was given, keyed by ``user_data``, and drops it
only when that operation's final completion is reaped (an ``-ECANCELED`` one
after a cancel counts; a multishot completion with ``IORING_CQE_F_MORE`` does
not).

The rings
---------
Three areas of memory are shared between the kernel and us, mapped with
``mmap`` on the ring file descriptor:

* the *submission queue* (SQ) ring: head, tail, mask, flags and an index array;
* the array of 64-byte *submission queue entries* (SQEs);
* the *completion queue* (CQ) ring: head, tail, mask and 16-byte *CQEs*.

We own the SQ tail and the CQ head; the kernel owns the SQ head and the CQ
tail.  Indices are free-running unsigned 32-bit counters: the slot is
``index & ring_mask`` and the fill level is ``(tail - head) mod 2**32``, which
stays right when the counters wrap past ``2**32 - 1``.  We fill the SQ index
array once with the identity (slot i -> SQE i) and never touch it again, so
queueing an operation is one ``struct.pack_into`` into the SQE slot; the new
tail is published once per batch.

Memory ordering: the kernel reads our SQ tail with acquire and writes its CQ
tail with release semantics.  On x86-64 (TSO) ordinary loads are not reordered
with other loads and ordinary stores not with other stores, so plain 32-bit
loads/stores through a ``memoryview`` suffice: SQEs written before the tail
store are visible when the kernel sees the tail; CQEs are read after the tail
load; the head store comes after those reads.  Each access is an opaque C call
in CPython, so the interpreter cannot reorder them either.  This module is
x86-64 only (syscall numbers 425/426/427 too); other architectures would need
real barriers.

Why batching
------------
The system call is the expensive part (entering the kernel, and in Python the
ctypes call: measured here ~0.5 us without ``argtypes``, ~1.1 us with).  ``submit_and_wait``
makes exactly one ``io_uring_enter`` that submits *every* queued SQE and
optionally waits for completions; ``reap`` then reads *all* available CQEs and
advances the CQ head once.  An event loop therefore costs one system call per
turn however many connections are active, and the per-operation cost is the
Python bytecode (a ``pack_into`` to queue, a tuple to reap).

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
in the CQ.  ``supports_quick_send`` checks that behaviour live (a kernel that
parked it anyway would break both promises).  ``submit_and_wait`` keeps the
other half: every SQE queued before it is submitted when it returns.

Setup flags and features are probed, never assumed: ``Ring`` tries
``SINGLE_ISSUER | DEFER_TASKRUN`` (completions are produced only when we enter
with GETEVENTS, in our own task: no interrupts, no extra wake-ups), then
``COOP_TASKRUN``, then nothing; ``register_probe`` asks which opcodes exist,
and the multishot variants are checked live.  ``probe()`` says whether
io_uring is usable at all here (``kernel.io_uring_disabled``, seccomp
profiles in containers, old kernels), and why not.

Threading: a ring created with ``SINGLE_ISSUER`` may only be used from the
thread that created it (others get ``EEXIST``).  Use one ring per thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable

__all__ = [
    "Ring",
    "BufferRing",
    "probe",
    "u32_diff",
    "LAYOUT",
    "IOSQE_IO_LINK",
    "IOSQE_IO_HARDLINK",
    "IOSQE_ASYNC",
    "IOSQE_BUFFER_SELECT",
    "IOSQE_CQE_SKIP_SUCCESS",
    "IORING_CQE_F_BUFFER",
    "IORING_CQE_F_MORE",
    "IORING_CQE_F_SOCK_NONEMPTY",
    "IORING_CQE_BUFFER_SHIFT",
]

# --------------------------------------------------------------------------
# Kernel ABI constants (linux/io_uring.h; numbers are stable across kernels).
# --------------------------------------------------------------------------

SYS_IO_URING_SETUP = 425
SYS_IO_URING_ENTER = 426
SYS_IO_URING_REGISTER = 427

# io_uring_setup flags
IORING_SETUP_IOPOLL = 1 << 0
IORING_SETUP_SQPOLL = 1 << 1
IORING_SETUP_CQSIZE = 1 << 3
IORING_SETUP_CLAMP = 1 << 4
IORING_SETUP_SUBMIT_ALL = 1 << 7
IORING_SETUP_COOP_TASKRUN = 1 << 8
IORING_SETUP_TASKRUN_FLAG = 1 << 9
IORING_SETUP_SINGLE_ISSUER = 1 << 12
IORING_SETUP_DEFER_TASKRUN = 1 << 13

_SETUP_FLAG_NAMES = {
    IORING_SETUP_IOPOLL: "IOPOLL",
    IORING_SETUP_SQPOLL: "SQPOLL",
    IORING_SETUP_CQSIZE: "CQSIZE",
    IORING_SETUP_CLAMP: "CLAMP",
    IORING_SETUP_SUBMIT_ALL: "SUBMIT_ALL",
    IORING_SETUP_COOP_TASKRUN: "COOP_TASKRUN",
    IORING_SETUP_TASKRUN_FLAG: "TASKRUN_FLAG",
    IORING_SETUP_SINGLE_ISSUER: "SINGLE_ISSUER",
    IORING_SETUP_DEFER_TASKRUN: "DEFER_TASKRUN",
}

# io_uring_params.features
_FEATURE_NAMES = (
    "SINGLE_MMAP",
    "NODROP",
    "SUBMIT_STABLE",
    "RW_CUR_POS",
    "CUR_PERSONALITY",
    "FAST_POLL",
    "POLL_32BITS",
    "SQPOLL_NONFIXED",
    "EXT_ARG",
    "NATIVE_WORKERS",
    "RSRC_TAGS",
    "CQE_SKIP",
    "LINKED_FILE",
    "REG_REG_RING",
    "RECVSEND_BUNDLE",
    "MIN_TIMEOUT",
    "RW_ATTR",
    "NO_IOWAIT",
)
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_FEAT_NODROP = 1 << 1
IORING_FEAT_EXT_ARG = 1 << 8
IORING_FEAT_CQE_SKIP = 1 << 11

# opcodes (enum io_uring_op)
IORING_OP_NOP = 0
IORING_OP_TIMEOUT = 11
IORING_OP_TIMEOUT_REMOVE = 12
IORING_OP_ACCEPT = 13
IORING_OP_ASYNC_CANCEL = 14
IORING_OP_LINK_TIMEOUT = 15
IORING_OP_CLOSE = 19
IORING_OP_SEND = 26
IORING_OP_RECV = 27
IORING_OP_SHUTDOWN = 34

# sqe->flags
IOSQE_FIXED_FILE = 1 << 0
IOSQE_IO_DRAIN = 1 << 1
IOSQE_IO_LINK = 1 << 2
IOSQE_IO_HARDLINK = 1 << 3
IOSQE_ASYNC = 1 << 4
IOSQE_BUFFER_SELECT = 1 << 5
IOSQE_CQE_SKIP_SUCCESS = 1 << 6

# per-opcode flags (multishot flags travel in sqe->ioprio)
IORING_RECV_MULTISHOT = 1 << 1
IORING_ACCEPT_MULTISHOT = 1 << 0
IORING_ASYNC_CANCEL_ALL = 1 << 0
IORING_ASYNC_CANCEL_ANY = 1 << 2

# cqe->flags
IORING_CQE_F_BUFFER = 1 << 0
IORING_CQE_F_MORE = 1 << 1
IORING_CQE_F_SOCK_NONEMPTY = 1 << 2
IORING_CQE_BUFFER_SHIFT = 16

# mmap offsets
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000

# sq_ring->flags
IORING_SQ_NEED_WAKEUP = 1 << 0
IORING_SQ_CQ_OVERFLOW = 1 << 1
IORING_SQ_TASKRUN = 1 << 2

# io_uring_enter flags
IORING_ENTER_GETEVENTS = 1 << 0
IORING_ENTER_EXT_ARG = 1 << 3

# io_uring_register opcodes
IORING_REGISTER_PROBE = 8
IORING_REGISTER_PBUF_RING = 22
IORING_UNREGISTER_PBUF_RING = 23
IO_URING_OP_SUPPORTED = 1 << 0

_U32 = 0xFFFFFFFF
_NSIG_BYTES = 8  # _NSIG / 8 on x86-64
# user_data values at or above this are reserved for the ring's own
# operations (live feature checks, the fallback timeout SQE).
USER_DATA_RESERVED = (1 << 64) - (1 << 16)
_UD_LIVE_PROBE = USER_DATA_RESERVED
_UD_LIVE_CANCEL = USER_DATA_RESERVED + 1
_UD_TIMEOUT = USER_DATA_RESERVED + 2
_UD_TIMEOUT_REMOVE = USER_DATA_RESERVED + 3


# --------------------------------------------------------------------------
# Structure layouts.  Fixed-size argument structs are ctypes Structures (we
# pass them by reference); SQEs and CQEs are precompiled struct.Structs (we
# pack/unpack them in place in the shared memory, which is the hot path).
# tests/uring/test_ring.py checks every offset against the C header.
# --------------------------------------------------------------------------


class _SqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("dropped", ctypes.c_uint32),
        ("array", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("resv2", ctypes.c_uint64),
    ]


class _CqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("overflow", ctypes.c_uint32),
        ("cqes", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("resv2", ctypes.c_uint64),
    ]


class _Params(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", _SqringOffsets),
        ("cq_off", _CqringOffsets),
    ]


class _Timespec(ctypes.Structure):  # struct __kernel_timespec
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class _GeteventsArg(ctypes.Structure):  # struct io_uring_getevents_arg
    _fields_ = [
        ("sigmask", ctypes.c_uint64),
        ("sigmask_sz", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
    ]


class _ProbeOp(ctypes.Structure):  # struct io_uring_probe_op
    _fields_ = [
        ("op", ctypes.c_uint8),
        ("resv", ctypes.c_uint8),
        ("flags", ctypes.c_uint16),
        ("resv2", ctypes.c_uint32),
    ]


_PROBE_OPS = 256  # opcodes are a u8; ask for all of them


class _Probe(ctypes.Structure):  # struct io_uring_probe + ops[256]
    _fields_ = [
        ("last_op", ctypes.c_uint8),
        ("ops_len", ctypes.c_uint8),
        ("resv", ctypes.c_uint16),
        ("resv2", ctypes.c_uint32 * 3),
        ("ops", _ProbeOp * _PROBE_OPS),
    ]


class _BufReg(ctypes.Structure):  # struct io_uring_buf_reg
    _fields_ = [
        ("ring_addr", ctypes.c_uint64),
        ("ring_entries", ctypes.c_uint32),
        ("bgid", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("resv", ctypes.c_uint64 * 3),
    ]


# struct io_uring_sqe, 64 bytes, in order; unions are written through the
# member we use ("op_flags" is the rw_flags/msg_flags/accept_flags/... union,
# "file_index" the splice_fd_in/file_index union, "buf_index" also buf_group).
SQE_FIELDS = (
    ("opcode", "B"),
    ("flags", "B"),
    ("ioprio", "H"),
    ("fd", "i"),
    ("off", "Q"),
    ("addr", "Q"),
    ("len", "I"),
    ("op_flags", "I"),
    ("user_data", "Q"),
    ("buf_index", "H"),
    ("personality", "H"),
    ("file_index", "I"),
    ("addr3", "Q"),
    ("pad2", "Q"),
)
_SQE = struct.Struct("<" + "".join(code for _, code in SQE_FIELDS))
# Every prep_* writes all 16 fields (stale bytes from the SQE's last use
# must not leak into the new one) with one precompiled pack_into (~0.3 us).
_pack_sqe = _SQE.pack_into
_ADDR_LEN = struct.Struct("<QI")  # io_uring_sqe.addr and .len (offsets 16 and 24)
_CQE = struct.Struct("<QiI")  # user_data, res, flags
_BUF = struct.Struct("<QIH")  # io_uring_buf minus resv
_SQE_SIZE = 64
_CQE_SIZE = 16
assert _SQE.size == _SQE_SIZE and _CQE.size == _CQE_SIZE


def _layout() -> dict[str, int]:
    """Offsets and sizes this module relies on, named like the C members."""
    out: dict[str, int] = {"sizeof(io_uring_sqe)": _SQE.size, "sizeof(io_uring_cqe)": _CQE.size}
    pos = 0
    for name, code in SQE_FIELDS:
        out["io_uring_sqe." + name] = pos
        pos += struct.calcsize("<" + code)
    for name, off in (("user_data", 0), ("res", 8), ("flags", 12)):
        out["io_uring_cqe." + name] = off
    for cname, cls in (
        ("io_uring_params", _Params),
        ("io_sqring_offsets", _SqringOffsets),
        ("io_cqring_offsets", _CqringOffsets),
        ("io_uring_getevents_arg", _GeteventsArg),
        ("io_uring_probe_op", _ProbeOp),
        ("io_uring_buf_reg", _BufReg),
    ):
        out[f"sizeof({cname})"] = ctypes.sizeof(cls)
        for field in cls._fields_:
            out[f"{cname}.{field[0]}"] = getattr(cls, field[0]).offset
    out["sizeof(io_uring_probe)"] = _Probe.ops.offset
    out["io_uring_probe.last_op"] = _Probe.last_op.offset
    out["io_uring_probe.ops_len"] = _Probe.ops_len.offset
    out["io_uring_probe.ops"] = _Probe.ops.offset
    out["sizeof(io_uring_buf)"] = 16
    out["io_uring_buf.addr"] = 0
    out["io_uring_buf.len"] = 8
    out["io_uring_buf.bid"] = 12
    out["io_uring_buf_ring.tail"] = 14
    return out


# The header names of the union members we write through a different name.
_LAYOUT_ALIASES = {
    "io_uring_sqe.op_flags": "io_uring_sqe.rw_flags",
    "io_uring_sqe.pad2": "io_uring_sqe.__pad2",
    "io_uring_buf_reg.flags": "io_uring_buf_reg.pad",
}
LAYOUT = {_LAYOUT_ALIASES.get(k, k): v for k, v in _layout().items()}


# --------------------------------------------------------------------------
# System calls.  ctypes without argtypes is the cheapest call form (an empty
# io_uring_enter: ~0.5 us against ~1.1 us with argtypes, measured here).
# Without argtypes a Python int is passed as a 32-bit C int and the upper
# half of its 64-bit register is left undefined
# (measured: garbage there makes io_uring_enter fail with EINVAL).  That is
# harmless for the u32/unsigned int parameters (the kernel's syscall wrapper
# truncates them), but every 64-bit parameter must be a ctypes object:
# pointers as byref()/None, io_uring_enter's size_t argsz as a preallocated
# c_size_t.  The return value is read as a C int, enough for the -1 / count
# / fd results of these three calls.
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_get_errno = ctypes.get_errno
# 64-bit arguments as ctypes objects (see above): syscall()'s own long
# number (older kernels read all of rax) and io_uring_enter's size_t argsz.
_NR_SETUP = ctypes.c_long(SYS_IO_URING_SETUP)
_NR_ENTER = ctypes.c_long(SYS_IO_URING_ENTER)
_NR_REGISTER = ctypes.c_long(SYS_IO_URING_REGISTER)
_ARGSZ_0 = ctypes.c_size_t(0)
# A "quick" send (Ring.quick_send_template): fail rather than wait, fail if short.
_QUICK_MSG_FLAGS = socket.MSG_DONTWAIT | socket.MSG_WAITALL | socket.MSG_NOSIGNAL

# CPython detail, checked here rather than assumed: the payload of a bytes
# object sits at a fixed offset from its address (id()).  It lets us take the
# address of a bytes buffer to send without ctypes.cast (~0.4 us).
_probe_bytes = b"iomodels"
_BYTES_OFF = ctypes.cast(_probe_bytes, ctypes.c_void_p).value - id(_probe_bytes)
if ctypes.string_at(id(_probe_bytes) + _BYTES_OFF, 8) != _probe_bytes:
    _BYTES_OFF = None  # pragma: no cover - not CPython-like


def _quick_sqe(fd: int, user_data: int) -> bytes:
    """The 64 bytes of a quick send on ``fd`` (Ring.quick_send_template)."""
    return _SQE.pack(
        # opcode, flags, ioprio, fd, off, addr, len, op_flags
        IORING_OP_SEND, IOSQE_CQE_SKIP_SUCCESS, 0, fd, 0, 0, 0, _QUICK_MSG_FLAGS,
        # user_data, buf_index, personality, file_index, addr3, pad2
        user_data, 0, 0, 0, 0, 0,
    )  # fmt: skip


def _errname(err: int) -> str:
    return errno.errorcode.get(err, str(err))


def _oserror(err: int, what: str) -> OSError:
    return OSError(err, f"{what}: {_errname(err)} ({os.strerror(err)})")


def u32_diff(a: int, b: int) -> int:
    """``a - b`` in unsigned 32-bit arithmetic (ring indices wrap at 2**32).

    ``u32_diff(0, 2**32 - 1) == 1``: a tail that wrapped to 0 is one past a
    head at ``2**32 - 1``.
    """
    return (a - b) & _U32


def read_cqes(view: memoryview, cqes_off: int, head: int, tail: int, mask: int) -> list[tuple[int, int, int]]:
    """Unpack the CQEs in ``[head, tail)`` (u32 indices) from a CQ ring view.

    At most two contiguous runs (before and after the slot index wraps to 0),
    each unpacked by one ``iter_unpack`` over a zero-copy memoryview slice.
    """
    n = (tail - head) & _U32
    if not n:
        return []
    start = head & mask
    first = min(n, mask + 1 - start)
    base = cqes_off + start * _CQE_SIZE
    out = list(_CQE.iter_unpack(view[base : base + first * _CQE_SIZE]))
    if first < n:
        out += _CQE.iter_unpack(view[cqes_off : cqes_off + (n - first) * _CQE_SIZE])
    return out


def _buffer_address(buf, writable: bool):
    """Return (address, length, keeper) for a buffer handed to the kernel.

    ``keeper`` is what the ring holds until the completion: for writable
    buffers a ctypes view made with ``from_buffer``, which also *exports* the
    buffer, so a bytearray cannot be resized (moved) while the kernel may
    write into it.  A read-only buffer that is not ``bytes`` is copied.
    """
    if type(buf) is bytes and not writable and _BYTES_OFF is not None:
        return id(buf) + _BYTES_OFF, len(buf), buf
    if type(buf) is bytearray and buf:
        # The common case, fast path: a 1-byte view at offset 0 is enough
        # to take the address and to hold the export.
        keeper = _c_char_from_buffer(buf)
        return ctypes.addressof(keeper), len(buf), keeper
    if isinstance(buf, ctypes.Array):
        return ctypes.addressof(buf), ctypes.sizeof(buf), buf
    try:
        keeper = (ctypes.c_char * memoryview(buf).nbytes).from_buffer(buf)
    except TypeError as exc:
        if writable:
            raise TypeError("recv needs a writable, contiguous buffer") from exc
        data = bytes(buf)
        return _buffer_address(data, False)
    return ctypes.addressof(keeper), len(keeper), keeper


_c_char_from_buffer = ctypes.c_char.from_buffer


# Buffers whose ring was closed while the kernel might still use them: kept
# forever rather than freed under the kernel's feet.
_GRAVEYARD: list = []


# --------------------------------------------------------------------------
# Probing.
# --------------------------------------------------------------------------


def _read_disabled_sysctl() -> int | None:
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def probe() -> tuple[bool, str]:
    """Can io_uring be used here?  ``(True, details)`` or ``(False, reason)``.

    Creates (and closes) a small real ring: that is the only reliable test,
    since seccomp profiles and sysctls can forbid it whatever the kernel.
    """
    disabled = _read_disabled_sysctl()
    try:
        ring = Ring(4)
    except OSError as exc:
        err = exc.errno or 0
        if err == errno.EPERM:
            hint = "kernel.io_uring_disabled or seccomp?"
            if disabled:
                hint = f"kernel.io_uring_disabled={disabled}"
            reason = f"io_uring_setup: EPERM ({hint})"
        elif err == errno.ENOSYS:
            reason = "io_uring_setup: ENOSYS (kernel without io_uring, or blocked by seccomp)"
        elif err == errno.ENOMEM:
            reason = "io_uring_setup: ENOMEM (RLIMIT_MEMLOCK too low?)"
        else:
            reason = f"io_uring_setup: {_errname(err)} ({exc})"
        return False, reason
    except Exception as exc:  # mmap failure and the like
        return False, f"io_uring: {type(exc).__name__}: {exc}"
    try:
        flags = "|".join(ring.setup_flag_names) or "none"
        return True, f"io_uring: setup {flags}; features {'|'.join(ring.feature_names)}"
    finally:
        ring.close()


# --------------------------------------------------------------------------
# The ring.
# --------------------------------------------------------------------------

# Setup flags tried in order; SUBMIT_ALL makes one enter submit every queued
# SQE even if one of them fails at submission time.
_SETUP_LADDER = (
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SUBMIT_ALL,
    0,
)


class Ring:
    """One io_uring instance: queue SQEs, submit in batches, reap CQEs.

    ``Ring(entries)`` creates an SQ of ``entries`` (rounded up to a power of
    two by the kernel) and a CQ of ``cq_entries`` (default: twice that).
    ``flags`` are extra ``IORING_SETUP_*`` flags OR-ed into every attempt;
    ``try_flags=False`` skips the taskrun ladder (uses ``flags`` only).

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
        ladder = _SETUP_LADDER if try_flags else (0,)
        if cq_entries:
            flags |= IORING_SETUP_CQSIZE
        params = _Params()
        last_err = errno.EINVAL
        for extra in ladder:
            params = _Params(flags=flags | extra, cq_entries=cq_entries)
            fd = _syscall(_NR_SETUP, entries, ctypes.byref(params))
            if fd >= 0:
                break
            last_err = _get_errno()
            if last_err != errno.EINVAL:  # EPERM, ENOSYS, ENOMEM: no use
                break
        if fd < 0:
            raise _oserror(last_err, "io_uring_setup")
        self.fd = fd
        self.setup_flags = params.flags
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
        self._defer_taskrun = bool(self.setup_flags & IORING_SETUP_DEFER_TASKRUN)
        self._ext_arg = bool(self.features & IORING_FEAT_EXT_ARG)
        # Reused argument blocks for timed waits (the kernel copies them).
        self._ts = _Timespec()
        self._geta = _GeteventsArg(sigmask=0, sigmask_sz=_NSIG_BYTES, ts=ctypes.addressof(self._ts))
        self._geta_ref = ctypes.byref(self._geta)
        self._geta_size = ctypes.c_size_t(ctypes.sizeof(_GeteventsArg))
        # user_data -> object keeping a buffer alive until its completion.
        self._keep: dict[int, object] = {}
        # Completions reaped internally (on EBUSY, during live checks) that
        # the caller has not seen yet: returned first by reap().
        self._backlog: list[tuple[int, int, int]] = []
        self._internal = 0  # internal ops whose CQE is still due
        self._timeouts = 0  # fallback timeout SQEs still armed
        self._probe_ops: bytes | None = None
        self._multishot: dict[str, bool] = {}
        self._live_result: int | None = None  # set by _retire for live checks

    # -- setup / teardown ------------------------------------------------

    def _map(self, p: _Params) -> None:
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        mflags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * _CQE_SIZE
        if self.features & IORING_FEAT_SINGLE_MMAP:
            # One mapping serves both rings (kernel 5.4+).
            size = max(sq_size, cq_size)
            sq_mm = mmap.mmap(self.fd, size, mflags, prot, offset=IORING_OFF_SQ_RING)
            cq_mm = sq_mm
            self._mms.append(sq_mm)
        else:
            sq_mm = mmap.mmap(self.fd, sq_size, mflags, prot, offset=IORING_OFF_SQ_RING)
            self._mms.append(sq_mm)
            cq_mm = mmap.mmap(self.fd, cq_size, mflags, prot, offset=IORING_OFF_CQ_RING)
            self._mms.append(cq_mm)
        sqes = mmap.mmap(self.fd, p.sq_entries * _SQE_SIZE, mflags, prot, offset=IORING_OFF_SQES)
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
        self._cq_koverflow = co.overflow // 4
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
                _GRAVEYARD.append(self._keep)
            self._keep = {}
            self._unmap()
            os.close(self.fd)
            self.fd = -1

    def _drain_in_flight(self, budget: float) -> None:
        deadline = time.monotonic() + budget
        for ud in list(self._keep):
            self.prep_cancel(ud, _UD_LIVE_CANCEL)
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
    def setup_flag_names(self) -> tuple[str, ...]:
        return tuple(n for b, n in _SETUP_FLAG_NAMES.items() if self.setup_flags & b)

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = [n for i, n in enumerate(_FEATURE_NAMES) if self.features & (1 << i)]
        unknown = self.features & ~((1 << len(_FEATURE_NAMES)) - 1)
        if unknown:
            names.append(f"0x{unknown:x}")
        return tuple(names)

    @property
    def in_flight_buffers(self) -> int:
        """How many operations still hold a buffer (await a completion)."""
        return len(self._keep)

    def holds_buffer(self, user_data: int) -> bool:
        return user_data in self._keep

    # -- queueing SQEs ---------------------------------------------------

    def _next_sqe(self) -> int:
        """Byte offset of the next free SQE; the local tail advances.

        The kernel's head is re-read only when our cached copy says the SQ
        is full; if it really is full, queued SQEs are submitted first.
        """
        tail = self._sq_tail
        if (tail - self._sq_head) & _U32 >= self.sq_entries:
            self._sq_head = self._sq32[self._sq_khead]
            if (tail - self._sq_head) & _U32 >= self.sq_entries:
                self._submit_only()
                self._sq_head = self._sq32[self._sq_khead]
                if (tail - self._sq_head) & _U32 >= self.sq_entries:
                    raise _oserror(errno.EBUSY, "io_uring SQ full")
        self._sq_tail = (tail + 1) & _U32
        return (tail & self._sq_mask) << 6

    def _keep_buffer(self, user_data: int, keeper) -> None:
        if user_data in self._keep:
            # Two in-flight operations with one user_data would free the
            # first buffer when the second is reaped (or vice versa).
            raise ValueError(f"user_data {user_data} already has a buffer in flight")
        self._keep[user_data] = keeper

    def pending_sqes(self) -> int:
        """SQEs queued but not yet consumed by the kernel."""
        return (self._sq_tail - self._sq32[self._sq_khead]) & _U32

    def prep_nop(self, user_data: int, sqe_flags: int = 0) -> None:
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_NOP, sqe_flags, 0, -1, 0, 0, 0, 0,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

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
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_ACCEPT, sqe_flags, ioprio, fd, 0, 0, 0, flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

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
        addr, size, keeper = _buffer_address(buf, True)
        if nbytes is None:
            nbytes = size - offset
        if offset < 0 or nbytes < 0 or offset + nbytes > size:
            raise ValueError("offset/nbytes outside the buffer")
        self._keep_buffer(user_data, keeper)
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_RECV, sqe_flags, 0, fd, 0, addr + offset, nbytes, msg_flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

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
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_RECV, sqe_flags | IOSQE_BUFFER_SELECT, ioprio, fd, 0, 0, 0, msg_flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, buf_group, 0, 0, 0, 0,
        )  # fmt: skip

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
        """
        addr, size, keeper = _buffer_address(buf, False)
        if nbytes is None:
            nbytes = size - offset
        if offset < 0 or nbytes < 0 or offset + nbytes > size:
            raise ValueError("offset/nbytes outside the buffer")
        self._keep_buffer(user_data, keeper)
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_SEND, sqe_flags, 0, fd, 0, addr + offset, nbytes, msg_flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

    def unmanaged_send_preparer(self) -> Callable[[int, bytes, int, int], None]:
        """``prep_send(fd, data, user_data, offset)`` for an event loop's hot path.

        Unlike :meth:`prep_send`, the ring does not record the buffer: the
        caller keeps ``data`` (a ``bytes`` object) alive until the send's
        final completion, as a transport does with its one send in flight.
        While the ring's buffer table is empty, :meth:`reap` does not walk
        the completions in Python to retire buffers (measured: ~0.3 us per
        request of ~1.8 us of Python in the io_uring model).  ``MSG_NOSIGNAL``.
        Falls back to :meth:`prep_send` where the bytes layout is unknown.
        """
        if _BYTES_OFF is None:  # pragma: no cover - not CPython-like
            prep = self.prep_send

            def prep_send_managed(fd: int, data: bytes, user_data: int, offset: int) -> None:
                prep(fd, data, user_data, offset=offset)

            return prep_send_managed
        pack, sqes, bytes_off, op_send = _pack_sqe, self._sqes, _BYTES_OFF, IORING_OP_SEND
        msg_flags = socket.MSG_NOSIGNAL
        entries, mask, next_sqe, ring = self.sq_entries, self._sq_mask, self._next_sqe, self

        def prep_send(fd: int, data: bytes, user_data: int, offset: int = 0) -> None:
            # _next_sqe() inlined for the common case (a frame is ~0.1 us).
            tail = ring._sq_tail
            if (tail - ring._sq_head) & _U32 < entries:
                ring._sq_tail = (tail + 1) & _U32
                slot = (tail & mask) << 6
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

    def quick_send_template(self, fd: int, user_data: int) -> bytes:
        """The SQE of a *quick send* on ``fd``, for :meth:`prep_quick_sends`.

        A quick send completes inside the enter that submits it and posts a
        CQE only if it did not send everything: ``MSG_DONTWAIT`` makes
        io_uring fail it with ``-EAGAIN`` where it would otherwise park it
        until the socket is writable (the request gets ``REQ_F_NOWAIT``);
        ``MSG_WAITALL`` turns a short send into a failure whose ``res`` is
        the count sent; ``IOSQE_CQE_SKIP_SUCCESS`` drops the CQE of a send
        that went out whole.  So once the next enter has returned, its bytes
        are no longer needed and the send is either done (no CQE) or its CQE
        (``-EAGAIN``, a short count, or an error) is among the next reap's.
        Check :attr:`supports_quick_send` first.
        """
        if _BYTES_OFF is None or not self.supports_quick_send:
            raise OSError(errno.EOPNOTSUPP, "quick sends are not supported here")
        return _quick_sqe(fd, user_data)

    def prep_quick_sends(self, sends: Iterable[tuple[bytes, bytes]]) -> None:
        """Queue quick sends, given as ``(template, data)`` pairs
        (:meth:`quick_send_template`; ``data`` a ``bytes`` object).

        Made for an event loop that stages its replies during a turn and
        queues them all just before its enter: per send one 64-byte copy of
        the template and one patch of address and length, in one loop here
        (measured: ~0.15 us a send less than one prep call each).  The
        caller keeps each ``data`` alive until the next enter has returned,
        and queues at most one quick send per socket per enter (two could
        reorder if the first comes back short).
        """
        sqes, mask, entries = self._sqes, self._sq_mask, self.sq_entries
        patch, bytes_off = _ADDR_LEN.pack_into, _BYTES_OFF
        tail, head = self._sq_tail, self._sq_head
        for template, data in sends:
            if (tail - head) & _U32 < entries:
                slot = (tail & mask) << 6
                tail = (tail + 1) & _U32
            else:  # full as far as we know: refresh the head, submit if it really is
                self._sq_tail = tail
                slot = self._next_sqe()
                tail, head = self._sq_tail, self._sq_head
            sqes[slot : slot + 64] = template
            patch(sqes, slot + 16, id(data) + bytes_off, len(data))
        self._sq_tail = tail

    def prep_close(self, fd: int, user_data: int, sqe_flags: int = 0) -> None:
        """Close ``fd`` asynchronously (the Python socket must be detached)."""
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_CLOSE, sqe_flags, 0, fd, 0, 0, 0, 0,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

    def prep_shutdown(self, fd: int, how: int, user_data: int, sqe_flags: int = 0) -> None:
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_SHUTDOWN, sqe_flags, 0, fd, 0, 0, how, 0,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

    def prep_cancel(
        self, target_user_data: int, user_data: int, *, flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """Cancel the request(s) with ``target_user_data``.

        This SQE completes with 0 (found), ``-ENOENT`` or ``-EALREADY``; the
        target completes separately with ``-ECANCELED`` (its buffer is
        released only then).  ``flags=IORING_ASYNC_CANCEL_ALL`` cancels every
        match (5.19+).
        """
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_ASYNC_CANCEL, sqe_flags, 0, -1, 0, target_user_data, 0, flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

    def prep_timeout(
        self, seconds: float, user_data: int, *, count: int = 0, flags: int = 0, sqe_flags: int = 0
    ) -> None:
        """A timer: completes with ``-ETIME`` after ``seconds`` (or with 0
        once ``count`` other completions have been posted)."""
        ts = _Timespec(int(seconds), int((seconds % 1) * 1e9))
        self._keep_buffer(user_data, ts)
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_TIMEOUT, sqe_flags, 0, -1, count, ctypes.addressof(ts), 1, flags,
            # user_data, buf_index, personality, file_index, addr3, pad2
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

    # -- submitting and waiting ------------------------------------------

    def _enter(self, to_submit: int, min_complete: int, flags: int, arg=None, argsz=_ARGSZ_0) -> int:
        """Raw io_uring_enter: result, or ``-errno``."""
        ret = _syscall(_NR_ENTER, self.fd, to_submit, min_complete, flags, arg, argsz)
        return ret if ret >= 0 else -_get_errno()

    def _submit_only(self) -> None:
        self.submit_and_wait(0)

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
        argsz = _ARGSZ_0
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
        to_submit = (tail - self._sq32[self._sq_khead]) & _U32
        submitted = 0
        for _ in range(8):
            ret = _syscall(_NR_ENTER, self.fd, to_submit, min_complete, flags, arg, argsz)
            if ret >= 0:
                submitted += ret
                if ret >= to_submit:
                    return submitted
                # Short (out of request memory): the rest is still in the SQ.
                # Callers rely on "queued before submit_and_wait returns means
                # submitted" (a quick send's bytes are freed after the next
                # reap), so submit the rest now, without waiting.
                self._backlog_reap()
                to_submit = (tail - self._sq32[self._sq_khead]) & _U32
                min_complete = 0
                continue
            err = _get_errno()
            if (err == errno.EINTR or err == errno.ETIME) and not (tail - self._sq32[self._sq_khead]) & _U32:
                return submitted  # interrupted or timed out, with everything submitted
            if err in (errno.EBUSY, errno.EAGAIN, errno.EINTR, errno.ETIME):
                # CQ full (older kernels refuse to submit then) or out of
                # request memory: take the completions out of the kernel's
                # way, keep them for reap(), and try again.
                if not self._backlog_reap():
                    self._enter(0, 0, IORING_ENTER_GETEVENTS)
                    self._backlog_reap()
                to_submit = (tail - self._sq32[self._sq_khead]) & _U32
                min_complete = 0
                continue
            if err == errno.EBADR:
                raise _oserror(err, "io_uring_enter: completions were dropped (CQ overflow without NODROP)")
            raise _oserror(err, "io_uring_enter")
        raise _oserror(errno.EBUSY, "io_uring_enter")

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
            _pack_sqe(
                self._sqes, self._next_sqe(),
                # opcode, flags, ioprio, fd, off, addr, len, op_flags
                IORING_OP_TIMEOUT_REMOVE, 0, 0, -1, 0, _UD_TIMEOUT, 0, 0,
                # user_data, buf_index, personality, file_index, addr3, pad2
                _UD_TIMEOUT_REMOVE, 0, 0, 0, 0, 0,
            )  # fmt: skip
            self._internal += 1
        ts = _Timespec(int(timeout), int((timeout % 1) * 1e9))
        self._keep[_UD_TIMEOUT] = ts  # the previous one is copied already
        _pack_sqe(
            self._sqes, self._next_sqe(),
            # opcode, flags, ioprio, fd, off, addr, len, op_flags
            IORING_OP_TIMEOUT, 0, 0, -1, 0, ctypes.addressof(ts), 1, 0,
            # user_data, buf_index, personality, file_index, addr3, pad2
            _UD_TIMEOUT, 0, 0, 0, 0, 0,
        )  # fmt: skip
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
                raise _oserror(-ret, "io_uring_enter (overflow flush)")
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
                if ud == _UD_TIMEOUT:
                    self._timeouts -= 1
                elif ud == _UD_LIVE_PROBE:
                    self._live_result = cqe[1]
                continue
            out.append(cqe)
        self._internal = internal
        return out

    # -- registration and probing ----------------------------------------

    def register(self, opcode: int, arg, nr_args: int) -> int:
        """Raw io_uring_register; raises OSError on failure."""
        ret = _syscall(_NR_REGISTER, self.fd, opcode, arg, nr_args)
        if ret < 0:
            raise _oserror(_get_errno(), f"io_uring_register({opcode})")
        return ret

    def register_probe(self) -> bytes:
        """Ask the kernel which opcodes it supports (IORING_REGISTER_PROBE,
        5.6+).  Returns one byte per opcode (1 = supported) and caches it."""
        pr = _Probe()
        try:
            self.register(IORING_REGISTER_PROBE, ctypes.byref(pr), _PROBE_OPS)
        except OSError:
            self._probe_ops = b""  # no probe: report nothing supported
            return self._probe_ops
        n = min(pr.ops_len, _PROBE_OPS)
        self._probe_ops = bytes(1 if pr.ops[i].flags & IO_URING_OP_SUPPORTED else 0 for i in range(n))
        return self._probe_ops

    def supports(self, opcode: int) -> bool:
        if self._probe_ops is None:
            self.register_probe()
        ops = self._probe_ops
        return 0 <= opcode < len(ops) and bool(ops[opcode])

    def _live_check(self, prep) -> int:
        """Queue one request (via ``prep(user_data)``), cancel it, and
        return its result: ``-EINVAL`` means the variant is unsupported."""
        self._live_result = None
        prep(_UD_LIVE_PROBE)
        self.prep_cancel(_UD_LIVE_PROBE, _UD_LIVE_CANCEL)
        self._internal += 2
        deadline = time.monotonic() + 2.0
        while self._live_result is None and time.monotonic() < deadline:
            self.submit_and_wait(1, timeout=0.1)
            self._backlog.extend(self.reap())
        return self._live_result if self._live_result is not None else -errno.ETIMEDOUT

    @property
    def supports_multishot_accept(self) -> bool:
        """Checked live once (arm on a loopback listener, then cancel).
        Completions of the caller's queued SQEs are kept for reap()."""
        if "accept" not in self._multishot:
            ok = self.supports(IORING_OP_ACCEPT)
            if ok:
                with socket.socket() as lsock:
                    lsock.bind(("127.0.0.1", 0))
                    lsock.listen(1)
                    res = self._live_check(lambda ud: self.prep_accept(lsock.fileno(), ud, multishot=True))
                ok = res == -errno.ECANCELED
            self._multishot["accept"] = ok
        return self._multishot["accept"]

    @property
    def supports_quick_send(self) -> bool:
        """Checked live once: with ``IORING_FEAT_CQE_SKIP`` (5.17+), a quick
        send (see :meth:`quick_send_template`) on a full socket must fail
        inside the enter with ``-EAGAIN``, not be parked until writable."""
        if "quick_send" not in self._multishot:
            ok = bool(self.features & IORING_FEAT_CQE_SKIP) and self.supports(IORING_OP_SEND)
            if ok and _BYTES_OFF is not None:
                ok = self._check_quick_send()
            self._multishot["quick_send"] = ok
        return self._multishot["quick_send"]

    def _check_quick_send(self) -> bool:
        # A full socket; the quick send is queued with a cancel behind it
        # (_live_check).  Failed inline: -EAGAIN (the cancel finds nothing).
        # Parked: the cancel ends it with -ECANCELED.
        payload = b"q" * 4096
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # the kernel's minimum
            with contextlib.suppress(BlockingIOError):
                while True:
                    a.send(b"\0" * 65536)
            template = _quick_sqe(a.fileno(), _UD_LIVE_PROBE)
            res = self._live_check(lambda _ud: self.prep_quick_sends([(template, payload)]))
            if res == -errno.ETIMEDOUT:
                _GRAVEYARD.append(payload)  # never completed: the kernel may still read it
            return res == -errno.EAGAIN
        finally:
            a.close()
            b.close()

    @property
    def supports_multishot_recv(self) -> bool:
        """Checked live once with a small temporary buffer ring."""
        if "recv" not in self._multishot:
            ok = self.supports(IORING_OP_RECV)
            if ok:
                try:
                    br = BufferRing(self, 0xFFFF, 2, 64)
                except OSError:
                    ok = False
                else:
                    a, b = socket.socketpair()
                    try:
                        res = self._live_check(
                            lambda ud: self.prep_recv_select(a.fileno(), ud, 0xFFFF, multishot=True)
                        )
                        ok = res == -errno.ECANCELED
                    finally:
                        a.close()
                        b.close()
                        br.close()
            self._multishot["recv"] = ok
        return self._multishot["recv"]


class BufferRing:
    """A provided-buffer ring (IORING_REGISTER_PBUF_RING, kernel 5.19+).

    ``count`` buffers of ``size`` bytes in one anonymous mapping, offered to
    the kernel under buffer group ``bgid``.  A recv with buffer selection
    takes one; its CQE says which (``bid``).  Read the data with
    ``view(bid, res)``, then ``recycle(bid)`` to give it back.  The ring of
    descriptors is page-aligned anonymous memory, as the kernel requires.
    """

    def __init__(self, ring: Ring, bgid: int, count: int, size: int) -> None:
        if count < 1 or count & (count - 1) or count > 32768:
            raise ValueError("count must be a power of two <= 32768")
        self.ring = ring
        self.bgid = bgid
        self.count = count
        self.size = size
        self._mask = count - 1
        self._closed = True
        self._ring_mem = mmap.mmap(-1, max(count * 16, mmap.PAGESIZE))
        self._data = mmap.mmap(-1, count * size)
        self._ring_view = memoryview(self._ring_mem)
        self._ring_anchor = ctypes.c_char.from_buffer(self._ring_mem)
        self._data_anchor = ctypes.c_char.from_buffer(self._data)
        self._data_addr = ctypes.addressof(self._data_anchor)
        self._tail16 = self._ring_view[14:16].cast("H")
        reg = _BufReg(ring_addr=ctypes.addressof(self._ring_anchor), ring_entries=count, bgid=bgid)
        try:
            ring.register(IORING_REGISTER_PBUF_RING, ctypes.byref(reg), 1)
        except BaseException:
            self._release()
            raise
        self._closed = False
        self._tail = 0
        self._slot_bids = [-1] * count  # the bid each ring entry names (the kernel only reads them)
        for bid in range(count):
            self._put(bid)
        self._tail16[0] = self._tail

    def _put(self, bid: int) -> None:
        # Write addr/len/bid only: entry 0's last u16 is the shared tail.
        i = self._tail & self._mask
        _BUF.pack_into(self._ring_view, i << 4, self._data_addr + bid * self.size, self.size, bid)
        self._slot_bids[i] = bid
        self._tail = (self._tail + 1) & 0xFFFF

    def recycle(self, bid: int) -> None:
        """Give buffer ``bid`` back to the kernel (publishes the tail)."""
        self._put(bid)
        self._tail16[0] = self._tail

    @property
    def memory(self) -> mmap.mmap:
        """The pool's memory: buffer ``bid`` is ``[bid * size, (bid + 1) * size)``.
        Slicing it copies the bytes out (what a transport hands its protocol)."""
        return self._data

    def batch_recycler(self) -> tuple[Callable[[int], None], Callable[[], None]]:
        """``(note, flush)`` for an event loop: ``note(bid)`` only records a
        used buffer (a list append, no Python frame); ``flush()``, once per
        loop turn before the enter, puts them all back and publishes the tail
        once.  :meth:`recycle` costs two Python frames per buffer (~0.2 us,
        a tenth of the io_uring model's Python per request).

        The kernel takes buffers in ring order, so a loop that gives each
        back as soon as it has copied it out returns them in the order they
        were taken: the ring slots they go back to already describe exactly
        those buffers.  ``flush`` checks that with one list comparison and
        then only moves the tail (no entry rewritten); any other order is
        written entry by entry."""
        used: list[int] = []
        put, view, mask = _BUF.pack_into, self._ring_view, self._mask
        base, size, tail16, count = self._data_addr, self.size, self._tail16, self.count
        slots = self._slot_bids  # which bid each ring entry names now

        def flush() -> None:
            tail = self._tail
            n = len(used)
            start = tail & mask
            if start + n > count or slots[start : start + n] != used:
                for bid in used:
                    i = tail & mask
                    if slots[i] != bid:
                        put(view, i << 4, base + bid * size, size, bid)
                        slots[i] = bid
                    tail = (tail + 1) & 0xFFFF
            else:
                tail = (tail + n) & 0xFFFF
            self._tail = tail
            tail16[0] = tail  # publish: the kernel may use them from now on
            used.clear()

        return used.append, flush

    def view(self, bid: int, nbytes: int) -> memoryview:
        """The first ``nbytes`` of buffer ``bid`` (valid until recycled).

        Release the view (``view.release()``) before ``close()``: an
        exported view keeps the mapping from being unmapped.
        """
        start = bid * self.size
        return memoryview(self._data)[start : start + nbytes]

    def _release(self) -> None:
        self._tail16.release()
        self._ring_view.release()
        del self._ring_anchor, self._data_anchor
        self._ring_mem.close()
        self._data.close()

    def close(self) -> None:
        """Unregister the group (when the ring is still open) and unmap.

        Only close once no recv that selects from this group is in flight.
        """
        if self._closed:
            return
        self._closed = True
        if not self.ring.closed:
            reg = _BufReg(bgid=self.bgid)
            try:
                self.ring.register(IORING_UNREGISTER_PBUF_RING, ctypes.byref(reg), 1)
            except OSError:
                pass
        self._release()

    def __enter__(self) -> BufferRing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
