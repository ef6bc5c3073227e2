"""transport.run_in_worker: the result comes back on the connection's loop,
and (where connections share a loop) the loop keeps serving meanwhile."""

import time

import pytest

from iomodels import models

from helpers import Server, recv_exactly

pytestmark = pytest.mark.timeout(60)

SHARED_LOOP = {"nonblocking", "select", "poll", "epoll", "kqueue", "sigio", "asyncio", "uvloop", "io_uring"}


def test_result_and_error_come_back(model):
    with Server(model, protocol="faulty:Offloading") as server, server.connect() as sock:
        sock.sendall(b"sleep:0.05")
        assert recv_exactly(sock, 10, timeout=5) == b"slept:0.05"
        sock.sendall(b"boom")
        reply = b"failed:raised in a worker"
        assert recv_exactly(sock, len(reply), timeout=5) == reply
        sock.sendall(b"echo")
        assert recv_exactly(sock, 4, timeout=5) == b"echo"


# The blocking models give each connection its own thread or process (or
# serve one at a time): for them run_in_worker runs inline, by design.
@pytest.mark.parametrize("name", [m for m in models.names() if m in SHARED_LOOP])
def test_loop_keeps_serving_while_work_runs(name):
    ok, reason = models.available(name)
    if not ok:
        pytest.skip(reason)
    with Server(name, protocol="faulty:Offloading") as server:
        slow, quick = server.connect(), server.connect()
        slow.sendall(b"sleep:1.0")
        time.sleep(0.1)
        start = time.monotonic()
        for _ in range(20):
            quick.sendall(b"ping")
            assert recv_exactly(quick, 4, timeout=5) == b"ping"
        assert time.monotonic() - start < 0.8, "the loop stalled while the worker slept"
        assert recv_exactly(slow, 9, timeout=5) == b"slept:1.0"
        slow.close()
        quick.close()


def test_connection_closed_before_the_work_ends(model):
    with Server(model, protocol="faulty:Offloading") as server:
        with server.connect() as sock:
            sock.sendall(b"sleep:0.3")
        time.sleep(0.6)  # the work ends on a closed connection: nothing to deliver
        server.canary()
        assert "Traceback" not in server.stderr()
        assert server.stop()[0] == 0
