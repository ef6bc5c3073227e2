"""A small io_uring layer over ctypes, mmap and struct (no compiled code).

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

Why batching
------------
The system call is the expensive part (entering the kernel, and in Python the
ctypes call).  ``Ring.submit_and_wait`` makes exactly one ``io_uring_enter``
that submits *every* queued SQE and optionally waits for completions;
``Ring.reap`` then reads *all* available CQEs and advances the CQ head once.
An event loop therefore costs one system call per turn however many
connections are active, and the per-operation cost is the Python bytecode (a
``pack_into`` to queue, a tuple to reap).

The package, one job per file, in the order they build on each other
--------------------------------------------------------------------
``abi.py``        the kernel's constants, struct layouts and syscall numbers
``addresses.py``  sockaddr and msghdr structures the kernel reads and fills
``buffers.py``    memory handed to the kernel; the provided-buffer ring
``fastpaths.py``  the event loop's hand-inlined sends (Ring methods)
``features.py``   is io_uring usable here, and which features (Ring methods)
``ring.py``       the Ring: setup, mmap, one SQE-preparation path, enter, reap

Everything a user needs is importable from ``iomodels.uring``; the kernel's
constants keep their C names (``IORING_OP_RECV``, ``IOSQE_IO_LINK``...).
"""

from __future__ import annotations

from . import abi
from .abi import *  # noqa: F403  (the kernel's names: abi.__all__)
from .abi import libc_syscall as _syscall  # noqa: F401  (see below)
from .buffers import BufferRing
from .features import probe
from .ring import Ring, read_cqes, u32_diff

# ``_syscall`` is the one seam between this package and the kernel: ring.py
# looks it up here at every call, so a test can replace it to make a system
# call fail (tests/models/test_io_uring_enter_failure.py, tests/uring/).

__all__ = [
    "Ring",
    "BufferRing",
    "probe",
    "read_cqes",
    "u32_diff",
    *abi.__all__,
]
