"""--max-connections, --idle-timeout, and running out of descriptors."""

import socket
import time

import pytest

from helpers import Server, expect_eof, no_reply_within, recv_exactly

pytestmark = pytest.mark.timeout(90)


def roundtrip(sock: socket.socket, data: bytes = b"ping") -> None:
    sock.sendall(data)
    assert recv_exactly(sock, len(data), timeout=5) == data


def test_max_connections(model):
    if model == "blocking":
        pytest.skip("blocking never has a second connection accepted: it waits in the backlog")
    with Server(model, "--max-connections", "2", protocol="echo") as server:
        first, second = server.connect(), server.connect()
        roundtrip(first)
        roundtrip(second)
        with server.connect() as third:
            assert expect_eof(third, timeout=5), "the connection beyond the limit was not closed"
        roundtrip(first)  # the others are untouched
        first.close()
        time.sleep(0.3)  # let the server see the close
        with server.connect() as fourth:
            roundtrip(fourth)
        second.close()


def test_idle_timeout(model):
    with Server(model, "--idle-timeout", "1", protocol="echo") as server:
        idle = server.connect()
        busy = server.connect() if model != "blocking" else None
        roundtrip(idle)
        start = time.monotonic()
        if busy is not None:
            for _ in range(8):  # progress every 0.25 s for 2 s: never idle
                roundtrip(busy)
                time.sleep(0.25)
        assert expect_eof(idle, timeout=5), "idle connection was not closed"
        assert time.monotonic() - start < 5
        if busy is not None:
            roundtrip(busy)
            busy.close()
        idle.close()
        server.canary()


def test_descriptor_exhaustion(model):
    """RLIMIT_NOFILE 64 and 80 clients: no spinning, and service resumes."""
    with Server(model, protocol="echo", nofile=64) as server:
        clients = []
        try:
            for _ in range(80):
                clients.append(socket.create_connection((server.host, server.port), timeout=5))
            time.sleep(0.5)
            cpu_before = server.cpu_seconds()
            time.sleep(1.0)
            cpu_used = server.cpu_seconds() - cpu_before
            if model != "nonblocking":  # which burns a CPU by design
                assert cpu_used < 0.5, f"server used {cpu_used:.2f} s of CPU in 1 s: spinning on accept?"
            assert server.proc.poll() is None
        finally:
            for sock in clients:
                sock.close()
        deadline = time.monotonic() + 15
        while True:  # recovery: a fresh client is served again
            try:
                with server.connect(timeout=3) as sock:
                    roundtrip(sock, b"canary")
                break
            except (OSError, AssertionError, EOFError):
                assert time.monotonic() < deadline, f"no recovery; stderr:\n{server.stderr()[-2000:]}"
                time.sleep(0.2)


def test_blocking_serves_one_client_at_a_time():
    with Server("blocking", protocol="echo") as server:
        first = server.connect()
        roundtrip(first)
        with server.connect() as second:
            second.sendall(b"waiting")
            assert no_reply_within(second, 1.0), "blocking served a second client at once"
            first.close()
            assert recv_exactly(second, 7, timeout=5) == b"waiting"


def test_threadpool_client_n_plus_one_waits():
    with Server("threadpool", "--threads", "2", protocol="echo") as server:
        first, second = server.connect(), server.connect()
        roundtrip(first)
        roundtrip(second)
        with server.connect() as third:
            third.sendall(b"third")
            assert no_reply_within(third, 1.0), "a third client was served by a pool of 2"
            first.close()
            assert recv_exactly(third, 5, timeout=5) == b"third"
        second.close()
