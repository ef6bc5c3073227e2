"""probe() and the feature checks (iomodels.uring.features)."""

import ctypes
import errno

import pytest

from iomodels import uring
from iomodels.uring import features
from iomodels.uring import ring as ring_module

from .support import needs_io_uring

pytestmark = needs_io_uring


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
    assert ring.setup_flags in ring_module.SETUP_LADDER
    names = ring.setup_flag_names
    if "DEFER_TASKRUN" in names:
        assert "SINGLE_ISSUER" in names
    assert (
        "SINGLE_MMAP" in ring.feature_names
        or ring.features == 0
        or not ring.features & uring.IORING_FEAT_SINGLE_MMAP
    )


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


def test_live_checks_run_once_per_ring(ring, monkeypatch):
    """A supports_* property checks live the first time, then answers from
    the ring's cache (the check queues, submits and reaps: not per call)."""
    first = (ring.supports_multishot_accept, ring.supports_multishot_recv, ring.supports_quick_send)

    def checked_again(*args):
        pytest.fail("a live check ran twice on one ring")

    monkeypatch.setattr(features, "_live_check", checked_again)
    again = (ring.supports_multishot_accept, ring.supports_multishot_recv, ring.supports_quick_send)
    assert again == first
    assert all(type(ok) is bool for ok in first)
