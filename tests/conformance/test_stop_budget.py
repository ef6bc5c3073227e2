"""The graceful stop honours its budget, on every model.

README: SIGINT or SIGTERM "flushes pending output for up to
--graceful-timeout seconds, closes every connection and exits 0".  The
budget is the whole stop, measured from the signal to the exit: flushing,
closing, joining threads and reaping children all fit in it.  The worst
case is a client that sends a lot and never reads: the server's output is
stuck, so the flush uses the whole budget and everything after it must fit
in what is left.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from helpers import Server, model_params, wait_group_gone

pytestmark = pytest.mark.timeout(60)

CHUNK = b"z" * 65536


def stuck_client(server: Server) -> tuple[socket.socket, threading.Event]:
    """A client that floods the server and never reads, with a small receive
    window, until the server stops reading from it (its output is stuck)."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect((server.host, server.port))
    sent = [0]
    done = threading.Event()

    def flood() -> None:
        try:
            while True:
                sock.sendall(CHUNK)
                sent[0] += 1
        except OSError:  # the server closed us: expected at the end of the stop
            pass
        finally:
            done.set()

    threading.Thread(target=flood, daemon=True).start()
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
        elif time.monotonic() - since > 0.5:
            break
    assert sent[0] > 4, f"the server read only {sent[0]} chunks: the setup did not take"
    assert not done.is_set(), "the server closed the client before the stop"
    return sock, done


def stop_within(server: Server, budget_s: float, signum: int = signal.SIGTERM) -> float:
    status, took = server.stop(signum, timeout=budget_s + 10)
    assert status == 0, f"exit status {status}; stderr:\n{server.stderr()[-3000:]}"
    assert took < budget_s, f"took {took:.3f} s, the budget is {budget_s} s:\n{server.stderr()[-3000:]}"
    assert wait_group_gone(server.pid, timeout=0.5) == [], "processes of the server's group outlived it"
    return took


@pytest.mark.parametrize("model", model_params())
def test_stuck_output_exits_within_the_graceful_timeout(model):
    with Server(model, "--graceful-timeout", "2", protocol="echo") as server:
        sock, done = stuck_client(server)
        stop_within(server, 2.0)
        # The stuck connection was closed (not left to the process exit alone):
        # the flooding client sees its sends fail.
        assert done.wait(5), "the stuck client's connection was never closed"
        sock.close()


def some_models(*names: str) -> list:
    return [param for param in model_params() if param.id in names]


@pytest.mark.parametrize("model", some_models("epoll", "threads", "processes", "asyncio", "io_uring"))
def test_default_budget_is_five_seconds(model):
    with Server(model, protocol="echo") as server:
        sock, _ = stuck_client(server)
        stop_within(server, 5.0)
        sock.close()


@pytest.mark.parametrize("model", some_models("epoll", "threadpool", "processes"))
def test_zero_budget_exits_at_once(model):
    """--graceful-timeout 0: no flush at all, the stop is immediate."""
    with Server(model, "--graceful-timeout", "0", protocol="echo") as server:
        sock, _ = stuck_client(server)
        stop_within(server, 0.5)
        sock.close()


OFFLOADING = [p for p in model_params() if p.id not in ("blocking", "threads", "processes", "threadpool")]


@pytest.mark.parametrize("model", OFFLOADING)
def test_a_busy_offload_worker_does_not_hold_the_exit(model):
    """The offload workers are joined within the budget too.  (The blocking
    models run the job inline on the connection's own thread: no pool.)"""
    with Server(model, "--graceful-timeout", "1", protocol="models.served_protocols:LongJob") as server:
        with server.connect() as sock:
            sock.sendall(b"go")
            assert sock.recv(2) == b"go"
            # The job may still wait in the pool's queue (a stop drops it
            # then, rightly, with nothing to report): ask until it runs.
            deadline = time.monotonic() + 10
            while True:
                sock.sendall(b"?")
                if sock.recv(1) == b"y":
                    break
                assert time.monotonic() < deadline, "the offloaded job never started"
                time.sleep(0.01)
            stop_within(server, 1.0)
        assert "offload worker(s) still busy at the stop deadline" in server.stderr()
