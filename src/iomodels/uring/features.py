"""What io_uring can do here: usable at all (and why not), and which features.

``probe()`` says whether io_uring is usable on this machine, and if not,
why (``kernel.io_uring_disabled``, seccomp profiles in containers, old
kernels, a low RLIMIT_MEMLOCK).  The rest are :class:`Ring` methods and
properties (ring.py binds them): ``register_probe``/``supports`` ask the
kernel which opcodes exist (IORING_REGISTER_PROBE), and the
``supports_*`` properties check a feature *live*, once per ring, because an
opcode that exists may still refuse a flag (multishot) or behave
differently (a quick send parked instead of failed): each arms the real
request on a real socket, cancels it, and reads what came back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .abi import (
    BYTES_OFF,
    FEATURE_NAMES,
    IO_URING_OP_SUPPORTED,
    IORING_FEAT_CQE_SKIP,
    IORING_OP_ACCEPT,
    IORING_OP_RECV,
    IORING_OP_SEND,
    IORING_REGISTER_PROBE,
    PROBE_OPS,
    SETUP_FLAG_NAMES,
    UD_LIVE_CANCEL,
    UD_LIVE_PROBE,
    Probe,
    errname,
)
from .buffers import GRAVEYARD, BufferRing
from .fastpaths import quick_sqe

if TYPE_CHECKING:
    from .ring import Ring

_SCRATCH_BGID = 0xFFFF  # the buffer group of the multishot recv check


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
    from .ring import Ring  # ring.py builds on this module

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
            reason = f"io_uring_setup: {errname(err)} ({exc})"
        return False, reason
    except Exception as exc:  # mmap failure and the like
        return False, f"io_uring: {type(exc).__name__}: {exc}"
    try:
        flags = "|".join(ring.setup_flag_names) or "none"
        return True, f"io_uring: setup {flags}; features {'|'.join(ring.feature_names)}"
    finally:
        ring.close()


# -- Ring properties: what setup gave us ----------------------------------------


def setup_flag_names(ring: Ring) -> tuple[str, ...]:
    """The ``IORING_SETUP_*`` flags this ring got, by name."""
    return tuple(n for b, n in SETUP_FLAG_NAMES.items() if ring.setup_flags & b)


def feature_names(ring: Ring) -> tuple[str, ...]:
    """The ``IORING_FEAT_*`` bits the kernel reported, by name (hex if unknown)."""
    names = [n for i, n in enumerate(FEATURE_NAMES) if ring.features & (1 << i)]
    unknown = ring.features & ~((1 << len(FEATURE_NAMES)) - 1)
    if unknown:
        names.append(f"0x{unknown:x}")
    return tuple(names)


# -- Ring methods: which opcodes exist ------------------------------------------


def register_probe(ring: Ring) -> bytes:
    """Ask the kernel which opcodes it supports (IORING_REGISTER_PROBE,
    5.6+).  Returns one byte per opcode (1 = supported) and caches it."""
    pr = Probe()
    try:
        ring.register(IORING_REGISTER_PROBE, ctypes.byref(pr), PROBE_OPS)
    except OSError:
        ring._probe_ops = b""  # no probe: report nothing supported
        return ring._probe_ops
    n = min(pr.ops_len, PROBE_OPS)
    ring._probe_ops = bytes(1 if pr.ops[i].flags & IO_URING_OP_SUPPORTED else 0 for i in range(n))
    return ring._probe_ops


def supports(ring: Ring, opcode: int) -> bool:
    """Whether the kernel knows ``opcode`` (asked once per ring)."""
    if ring._probe_ops is None:
        ring.register_probe()
    ops = ring._probe_ops
    return 0 <= opcode < len(ops) and bool(ops[opcode])


# -- Ring properties: features checked live, once per ring ----------------------


def _checked_once(check: Callable[[Ring], bool]) -> Callable[[Ring], bool]:
    """``check(ring)`` run the first time only; the answer is kept in
    ``ring._checked`` under the check's name."""
    name = check.__name__

    @functools.wraps(check)
    def checked(ring: Ring) -> bool:
        ok = ring._checked.get(name)
        if ok is None:
            ok = ring._checked[name] = check(ring)
        return ok

    return checked


def _live_check(ring: Ring, prep) -> int:
    """Queue one internal request (via ``prep(user_data)``), cancel it, and
    return its result.  The caller's own queued SQEs are submitted along,
    and their completions kept for its next reap() (Ring._retire hands this
    request's result over in ring._live_result)."""
    ring._live_result = None
    prep(UD_LIVE_PROBE)
    ring.prep_cancel(UD_LIVE_PROBE, UD_LIVE_CANCEL)
    ring._internal += 2
    deadline = time.monotonic() + 2.0
    while ring._live_result is None and time.monotonic() < deadline:
        ring.submit_and_wait(1, timeout=0.1)
        ring._backlog.extend(ring.reap())
    return ring._live_result if ring._live_result is not None else -errno.ETIMEDOUT


@_checked_once
def supports_multishot_accept(ring: Ring) -> bool:
    """Checked live once (arm on a loopback listener, then cancel)."""
    if not ring.supports(IORING_OP_ACCEPT):
        return False
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        res = _live_check(ring, lambda ud: ring.prep_accept(lsock.fileno(), ud, multishot=True))
    return res == -errno.ECANCELED


@_checked_once
def supports_quick_send(ring: Ring) -> bool:
    """Checked live once: with ``IORING_FEAT_CQE_SKIP`` (5.17+), a quick
    send (see :meth:`quick_send_template`) on a full socket must fail inside
    the enter with ``-EAGAIN``, not be parked until writable."""
    if not (ring.features & IORING_FEAT_CQE_SKIP and ring.supports(IORING_OP_SEND)):
        return False
    return BYTES_OFF is None or _quick_send_fails_inline(ring)


def _quick_send_fails_inline(ring: Ring) -> bool:
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
        template = quick_sqe(a.fileno(), UD_LIVE_PROBE)
        res = _live_check(ring, lambda _ud: ring.prep_quick_sends([(template, payload)]))
        if res == -errno.ETIMEDOUT:
            GRAVEYARD.append(payload)  # never completed: the kernel may still read it
        return res == -errno.EAGAIN
    finally:
        a.close()
        b.close()


@_checked_once
def supports_multishot_recv(ring: Ring) -> bool:
    """Checked live once with a small temporary buffer ring."""
    if not ring.supports(IORING_OP_RECV):
        return False
    try:
        br = BufferRing(ring, _SCRATCH_BGID, 2, 64)
    except OSError:
        return False
    a, b = socket.socketpair()
    try:
        res = _live_check(
            ring, lambda ud: ring.prep_recv_select(a.fileno(), ud, _SCRATCH_BGID, multishot=True)
        )
        return res == -errno.ECANCELED
    finally:
        a.close()
        b.close()
        br.close()
