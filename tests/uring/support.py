"""What the ring tests share (fixtures are in conftest.py)."""

import time

import pytest

from iomodels import uring

_OK, _REASON = uring.probe()

# Every test here needs a working io_uring; a machine without one skips
# them with probe()'s reason (tests/models/ check that reason separately).
needs_io_uring = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not _OK, reason=_REASON),
]


class Buf(bytearray):
    """A bytearray that can be weakly referenced (to watch its lifetime)."""


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


def recv_exactly_socket(sock, n):
    buf = b""
    sock.settimeout(5)
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk
        buf += chunk
    return buf
