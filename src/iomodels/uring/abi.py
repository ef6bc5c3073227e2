"""The binary interfaces the ring layer relies on, and nothing else.

The kernel's: constants, struct layouts and system call numbers, as in
``/usr/include/linux/io_uring.h`` (tests/uring/test_abi.py compiles that
header and checks every offset in :data:`LAYOUT` against it).  The kernel's
errors, named (:func:`oserror`).  And one CPython fact, checked at import:
where a ``bytes`` object keeps its payload.

Fixed-size argument structs are ctypes Structures (passed by reference);
SQEs and CQEs are precompiled ``struct.Struct``\\ s, packed and unpacked in
place in the shared memory, which is the hot path.  The numbers are stable
across kernels; the syscall numbers are x86-64's (see ring.py on memory
ordering, the other reason this layer is x86-64 only).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

# --------------------------------------------------------------------------
# System calls (x86-64 numbers).
# --------------------------------------------------------------------------

SYS_IO_URING_SETUP = 425
SYS_IO_URING_ENTER = 426
SYS_IO_URING_REGISTER = 427

# --------------------------------------------------------------------------
# Constants.
# --------------------------------------------------------------------------

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

SETUP_FLAG_NAMES = {
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

# io_uring_params.features, bit i named FEATURE_NAMES[i]
FEATURE_NAMES = (
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
IORING_OP_POLL_ADD = 6  # 5.1
IORING_OP_SENDMSG = 9  # 5.3
IORING_OP_RECVMSG = 10  # 5.3
IORING_OP_TIMEOUT = 11
IORING_OP_TIMEOUT_REMOVE = 12
IORING_OP_ACCEPT = 13
IORING_OP_ASYNC_CANCEL = 14
IORING_OP_LINK_TIMEOUT = 15
IORING_OP_CONNECT = 16  # 5.5
IORING_OP_CLOSE = 19
IORING_OP_READ = 22  # 5.6
IORING_OP_WRITE = 23  # 5.6
IORING_OP_SEND = 26
IORING_OP_RECV = 27
IORING_OP_SPLICE = 30  # 5.7
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

U32_MASK = 0xFFFFFFFF  # ring indices are free-running u32 counters
NSIG_BYTES = 8  # _NSIG / 8 on x86-64

# user_data values at or above this are reserved for the ring's own
# operations (live feature checks, the fallback timeout SQE).
USER_DATA_RESERVED = (1 << 64) - (1 << 16)
UD_LIVE_PROBE = USER_DATA_RESERVED
UD_LIVE_CANCEL = USER_DATA_RESERVED + 1
UD_TIMEOUT = USER_DATA_RESERVED + 2
UD_TIMEOUT_REMOVE = USER_DATA_RESERVED + 3


# --------------------------------------------------------------------------
# Structure layouts.
# --------------------------------------------------------------------------


class SqringOffsets(ctypes.Structure):  # struct io_sqring_offsets
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


class CqringOffsets(ctypes.Structure):  # struct io_cqring_offsets
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


class Params(ctypes.Structure):  # struct io_uring_params
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", SqringOffsets),
        ("cq_off", CqringOffsets),
    ]


class Timespec(ctypes.Structure):  # struct __kernel_timespec
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


def timespec(seconds: float) -> Timespec:
    return Timespec(int(seconds), int((seconds % 1) * 1e9))


class GeteventsArg(ctypes.Structure):  # struct io_uring_getevents_arg
    _fields_ = [
        ("sigmask", ctypes.c_uint64),
        ("sigmask_sz", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
    ]


class ProbeOp(ctypes.Structure):  # struct io_uring_probe_op
    _fields_ = [
        ("op", ctypes.c_uint8),
        ("resv", ctypes.c_uint8),
        ("flags", ctypes.c_uint16),
        ("resv2", ctypes.c_uint32),
    ]


PROBE_OPS = 256  # opcodes are a u8; ask for all of them


class Probe(ctypes.Structure):  # struct io_uring_probe + ops[256]
    _fields_ = [
        ("last_op", ctypes.c_uint8),
        ("ops_len", ctypes.c_uint8),
        ("resv", ctypes.c_uint16),
        ("resv2", ctypes.c_uint32 * 3),
        ("ops", ProbeOp * PROBE_OPS),
    ]


class BufReg(ctypes.Structure):  # struct io_uring_buf_reg
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
SQE = struct.Struct("<" + "".join(code for _, code in SQE_FIELDS))
SQE_ADDR_LEN = struct.Struct("<QI")  # io_uring_sqe.addr and .len, at SQE_ADDR_OFF
SQE_ADDR_OFF = 16
CQE = struct.Struct("<QiI")  # struct io_uring_cqe: user_data, res, flags
BUF = struct.Struct("<QIH")  # struct io_uring_buf minus resv (entry 0's resv is the ring's tail)
BUF_RING_TAIL_OFF = 14  # io_uring_buf_ring.tail
SQE_SIZE = 64
SQE_SHIFT = 6  # slot << SQE_SHIFT is the SQE's byte offset
CQE_SIZE = 16
BUF_SIZE = 16
assert SQE.size == SQE_SIZE == 1 << SQE_SHIFT and CQE.size == CQE_SIZE
assert struct.calcsize("<BBHiQ") == SQE_ADDR_OFF


def _layout() -> dict[str, int]:
    """Offsets and sizes this package relies on, named like the C members."""
    out: dict[str, int] = {"sizeof(io_uring_sqe)": SQE.size, "sizeof(io_uring_cqe)": CQE.size}
    pos = 0
    for name, code in SQE_FIELDS:
        out["io_uring_sqe." + name] = pos
        pos += struct.calcsize("<" + code)
    for name, off in (("user_data", 0), ("res", 8), ("flags", 12)):
        out["io_uring_cqe." + name] = off
    for cname, cls in (
        ("io_uring_params", Params),
        ("io_sqring_offsets", SqringOffsets),
        ("io_cqring_offsets", CqringOffsets),
        ("io_uring_getevents_arg", GeteventsArg),
        ("io_uring_probe_op", ProbeOp),
        ("io_uring_buf_reg", BufReg),
    ):
        out[f"sizeof({cname})"] = ctypes.sizeof(cls)
        for field in cls._fields_:
            out[f"{cname}.{field[0]}"] = getattr(cls, field[0]).offset
    out["sizeof(io_uring_probe)"] = Probe.ops.offset
    out["io_uring_probe.last_op"] = Probe.last_op.offset
    out["io_uring_probe.ops_len"] = Probe.ops_len.offset
    out["io_uring_probe.ops"] = Probe.ops.offset
    out["sizeof(io_uring_buf)"] = BUF_SIZE
    out["io_uring_buf.addr"] = 0
    out["io_uring_buf.len"] = 8
    out["io_uring_buf.bid"] = 12
    out["io_uring_buf_ring.tail"] = BUF_RING_TAIL_OFF
    return out


# The header names of the union members we write through a different name.
LAYOUT_ALIASES = {
    "io_uring_sqe.op_flags": "io_uring_sqe.rw_flags",
    "io_uring_sqe.pad2": "io_uring_sqe.__pad2",
    "io_uring_buf_reg.flags": "io_uring_buf_reg.pad",
}
LAYOUT = {LAYOUT_ALIASES.get(k, k): v for k, v in _layout().items()}


# --------------------------------------------------------------------------
# Calling the kernel.  ctypes without argtypes is the cheapest call form
# (see BENCHMARKS.md, section "The ring layer's unit costs").  Without
# argtypes a Python int is passed as a 32-bit C int and the upper half of its
# 64-bit register is left undefined (garbage there has been seen to make
# io_uring_enter fail with EINVAL).  That is harmless for the u32/unsigned
# int parameters (the kernel's syscall wrapper truncates them), but every
# 64-bit parameter must be a ctypes object: pointers as byref()/None,
# io_uring_enter's size_t argsz as a preallocated c_size_t, and syscall()'s
# own long number (older kernels read all of rax).  The return value is read
# as a C int, enough for the -1 / count / fd results of these three calls.
# --------------------------------------------------------------------------

libc_syscall = ctypes.CDLL(None, use_errno=True).syscall
get_errno = ctypes.get_errno
NR_SETUP = ctypes.c_long(SYS_IO_URING_SETUP)
NR_ENTER = ctypes.c_long(SYS_IO_URING_ENTER)
NR_REGISTER = ctypes.c_long(SYS_IO_URING_REGISTER)
ARGSZ_0 = ctypes.c_size_t(0)


# --------------------------------------------------------------------------
# CPython's side, checked here rather than assumed: the payload of a bytes
# object sits at a fixed offset from its address (id()).  It gives the
# address of a bytes buffer to send without a ctypes.cast per send.  None
# where it does not hold; the fast paths then fall back to the plain ones.
# --------------------------------------------------------------------------


def _bytes_payload_offset() -> int | None:
    sample = b"iomodels"
    off = ctypes.cast(sample, ctypes.c_void_p).value - id(sample)
    return off if ctypes.string_at(id(sample) + off, len(sample)) == sample else None


BYTES_OFF = _bytes_payload_offset()


def errname(err: int) -> str:
    """``errno.EAGAIN`` -> ``"EAGAIN"`` (the kernel reports ``-errno``)."""
    return errno.errorcode.get(err, str(err))


def oserror(err: int, what: str) -> OSError:
    return OSError(err, f"{what}: {errname(err)} ({os.strerror(err)})")


# What ``from iomodels.uring import *`` and the package re-export: the
# kernel's names as the C header spells them, and the layouts tests check.
__all__ = [name for name in dir() if name.startswith(("IORING_", "IOSQE_", "IO_URING_", "SYS_IO_URING_"))] + [
    "LAYOUT",
    "SQE_FIELDS",
    "USER_DATA_RESERVED",
]
