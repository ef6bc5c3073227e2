"""Thousands of idle connections alongside active ones (readiness models)."""

import pytest

from iomodels import models

from helpers import Server, many_connections, recv_exactly

pytestmark = pytest.mark.timeout(180)

# The readiness models watch every connection from one thread; select only up
# to FD_SETSIZE (its own test covers beyond), nonblocking pays a recv() per
# connection per sweep, so it gets fewer.
IDLE = {
    "poll": 5000,
    "epoll": 5000,
    "kqueue": 5000,
    "asyncio": 5000,
    "uvloop": 5000,
    "sigio": 5000,
    "io_uring": 5000,
    "select": 900,
    "nonblocking": 1000,
}


@pytest.mark.parametrize("name", [m for m in models.names() if m in IDLE])
def test_idle_plus_active(name):
    ok, reason = models.available(name)
    if not ok:
        pytest.skip(reason)
    with Server(name, protocol="echo") as server, many_connections(server, IDLE[name]) as idle:
        active = [server.connect() for _ in range(10)]
        for round_ in range(20):
            for i, sock in enumerate(active):
                msg = f"{round_}:{i};".encode()
                sock.sendall(msg)
                assert recv_exactly(sock, len(msg)) == msg
        for sock in idle[:: max(1, len(idle) // 50)]:  # a sample of idle ones is still served
            sock.sendall(b"still")
            assert recv_exactly(sock, 5) == b"still"
        for sock in active:
            sock.close()
