"""transport.set_idle_timeout(seconds), on every model: a protocol sets 0.5 s
and the connection closes (connection_lost gets a TimeoutError) within
bounds; data keeps it open; None restores the server's default (here 0:
never).  The event loops check a quarter of the timeout apart, so the close
comes between 0.5 and ~0.63 s after the last progress; the bounds below
leave room for a loaded machine."""

from __future__ import annotations

import time

import pytest

from helpers import Server, expect_eof, model_params, no_reply_within, recv_exactly

pytestmark = pytest.mark.timeout(60)

PROTOCOLS = "models.served_protocols"
EARLIEST_S = 0.45  # the timeout, less the clock's granularity
LATEST_S = 1.5  # the timeout plus a sweep period, plus a loaded machine's delays


def wait_for_log(server: Server, text: str, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stderr = server.stderr()
        if text in stderr:
            return stderr
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never logged; stderr:\n{server.stderr()[-3000:]}")


@pytest.mark.parametrize("model", model_params())
def test_a_silent_connection_closes_after_its_timeout(model):
    with Server(model, protocol=f"{PROTOCOLS}:IdleHalfSecond") as server:
        sock = server.connect()
        start = time.monotonic()
        assert expect_eof(sock, timeout=5), "the idle connection was never closed"
        took = time.monotonic() - start
        sock.close()
        assert EARLIEST_S <= took < LATEST_S, f"closed after {took:.3f} s, the timeout is 0.5 s"
        wait_for_log(server, "idle-test lost: TimeoutError")
        server.canary()  # one connection's timeout, not the server's


@pytest.mark.parametrize("model", model_params())
def test_data_keeps_it_open(model):
    with Server(model, protocol=f"{PROTOCOLS}:IdleHalfSecond") as server:
        with server.connect() as sock:
            for i in range(8):  # 1.6 s in all, 0.2 s apart: never 0.5 s silent
                sock.sendall(b"%d" % i)
                assert recv_exactly(sock, 1) == b"%d" % i
                time.sleep(0.2)
            last = time.monotonic()
            assert expect_eof(sock, timeout=5)
            took = time.monotonic() - last
        assert EARLIEST_S - 0.2 <= took < LATEST_S, f"closed {took:.3f} s after the last byte"


@pytest.mark.parametrize("model", model_params())
def test_none_restores_the_server_default(model):
    with Server(model, protocol=f"{PROTOCOLS}:IdleUntilData") as server, server.connect() as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        assert no_reply_within(sock, 1.5), "closed although the timeout went back to never"
        sock.sendall(b"y")
        assert recv_exactly(sock, 1) == b"y"
