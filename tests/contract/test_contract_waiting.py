"""Contract: who waits -- `blocking` (one client at a time), `threadpool` (client N+1 waits),
and every other model serving several clients at once."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _contract_support import (
    Sockets,
    all_models,
    canary,
    exchange,
    expect_silence,
    recv_exact,
    require_available,
    start_server,
)

pytestmark = pytest.mark.timeout(60)

MODELS = all_models()
SILENCE = 1.0  # how long a waiting client must see nothing


@pytest.fixture
def socks():
    s = Sockets()
    try:
        yield s
    finally:
        s.close_all()


def test_blocking_serves_one_client_at_a_time(socks):
    # "blocking: one thread, blocking sockets, one client at a time (the next waits in the backlog)"
    require_available("blocking")
    srv = start_server("blocking", protocol="upper")
    try:
        first = socks.add(srv.connect())
        exchange(first, b"first\n", b"FIRST\n")
        second = socks.add(srv.connect())  # completes: the kernel's backlog holds it
        second.sendall(b"second\n")
        expect_silence(second, SILENCE)
        exchange(first, b"still first\n", b"STILL FIRST\n")  # the first keeps being served
        expect_silence(second, 0.2)
        first.close()
        assert recv_exact(second, 7, what="reply to the waiting client after the first left") == b"SECOND\n"
        exchange(second, b"more\n", b"MORE\n")
        second.close()
        canary(srv, "upper")
    finally:
        socks.close_all()
        srv.stop()


def test_blocking_next_served_after_half_close(socks):
    # the first client half-closes: its output is flushed, it is closed, the next is served
    require_available("blocking")
    srv = start_server("blocking", protocol="echo")
    try:
        first = socks.add(srv.connect())
        exchange(first, b"1")
        second = socks.add(srv.connect())
        second.sendall(b"2")
        expect_silence(second, SILENCE)
        first.sendall(b"bye")
        import socket as _s
        first.shutdown(_s.SHUT_WR)
        assert recv_exact(first, 3) == b"bye"
        assert recv_exact(second, 1, what="reply after the first half-closed") == b"2"
    finally:
        socks.close_all()
        srv.stop()


def test_threadpool_client_n_plus_1_waits(socks):
    # "threadpool: blocking IO on a fixed pool of --threads workers (default 8); client N+1 waits"
    require_available("threadpool")
    srv = start_server("threadpool", protocol="echo", extra=["--threads", "2"])
    try:
        a = socks.add(srv.connect())
        b = socks.add(srv.connect())
        exchange(a, b"a")
        exchange(b, b"b")
        c = socks.add(srv.connect())
        c.sendall(b"c")
        expect_silence(c, SILENCE)
        exchange(a, b"a again")
        exchange(b, b"b again")
        a.close()
        assert recv_exact(c, 1, what="reply to client 3 after a worker freed up") == b"c"
        exchange(c, b"c again")
        exchange(b, b"b last")
        d = socks.add(srv.connect())
        d.sendall(b"d")
        expect_silence(d, SILENCE)  # b and c hold both workers
        b.close()
        assert recv_exact(d, 1) == b"d"
    finally:
        socks.close_all()
        srv.stop()


def test_threadpool_default_is_8_workers(socks):
    # "(default 8)": eight clients are served at once, the ninth waits
    require_available("threadpool")
    srv = start_server("threadpool", protocol="echo")
    try:
        clients = [socks.add(srv.connect()) for _ in range(8)]
        for i, c in enumerate(clients):
            exchange(c, b"%d" % i)
        ninth = socks.add(srv.connect())
        ninth.sendall(b"9")
        expect_silence(ninth, SILENCE)
        clients[0].close()
        assert recv_exact(ninth, 1) == b"9"
    finally:
        socks.close_all()
        srv.stop()


@pytest.mark.parametrize("model", [m for m in MODELS if m != "blocking"])
def test_concurrent_models_serve_clients_at_once(model, socks):
    # threads/processes: one per connection; readiness and asyncio models: one loop for all.
    # threadpool has 8 workers by default, so 6 clients are served at once there too.
    require_available(model)
    srv = start_server(model, protocol="upper")
    try:
        clients = [socks.add(srv.connect()) for _ in range(6)]
        # all connected and idle; each gets its reply while the others stay open
        for i, c in enumerate(reversed(clients)):
            exchange(c, b"c%d\n" % i, b"C%d\n" % i)
        for i, c in enumerate(clients):
            exchange(c, "ß%d".encode() % i, b"SS%d" % i)
    finally:
        socks.close_all()
        srv.stop()
