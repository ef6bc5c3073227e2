"""Half-close, reset, a raising protocol, the callback state machine; a canary after each."""

import contextlib
import os
import re
import socket
import time

import pytest

from helpers import Flood, Server, expect_eof, recv_exactly, reset, roundtrip

pytestmark = pytest.mark.timeout(90)


def test_half_close_flushes_everything(model):
    """The client sends 4 MiB without reading, then half-closes: all of it comes
    back (the server's output was over the water mark), then EOF."""
    data = os.urandom(4 << 20)
    with Server(model, protocol="echo") as server:
        with server.connect() as sock:
            flood = Flood(sock, data, 1).start()
            time.sleep(0.3)  # let the server fill its side before we read
            received = bytearray()
            sock.settimeout(10)
            while len(received) < len(data):
                chunk = sock.recv(1 << 20)
                assert chunk, f"EOF after {len(received)} bytes"
                received += chunk
            flood.join(10)
            assert flood.done, f"sending failed: {flood.error!r}"
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b"", "server did not close after flushing"
            assert bytes(received) == data
        server.canary()


@contextlib.contextmanager
def bystander(server: Server, model: str):
    """A connection kept open through the fault, checked before and after.
    None for ``blocking``: it serves one client at a time, so anyone else waits."""
    if model == "blocking":
        yield None
        return
    with server.connect() as sock:
        sock.sendall(b"before")
        assert recv_exactly(sock, 6) == b"before"
        yield sock
        sock.sendall(b"after")
        assert recv_exactly(sock, 5) == b"after"


def test_reset_mid_stream_only_that_connection(model):
    """Client resets and broken pipes: only that connection goes, quietly."""
    with Server(model, protocol="echo") as server:
        with bystander(server, model):
            for _ in range(3):  # reset with the server's replies unread
                sock = server.connect()
                sock.sendall(os.urandom(256 * 1024))
                reset(sock)
            sock = server.connect()  # reset while the server has stopped reading it
            roundtrip(sock, b"warm")
            flood = Flood(sock, os.urandom(1 << 16)).start()  # until stopped
            assert flood.wait_stalled(quiet=0.3, timeout=20), f"the flood ended: {flood.error!r}"
            flood.stop()
            reset(sock)
            with server.connect() as sock:  # a plain close, replies unread: the kernel resets
                roundtrip(sock, b"a")
                sock.sendall(b"b" * 500_000)
            time.sleep(0.2)
        server.canary()
        assert server.alive()
        assert "Traceback" not in server.stderr()


def test_raising_protocol_closes_only_its_connection(model):
    with Server(model, protocol="faulty:Raising") as server:
        with bystander(server, model):
            with server.connect() as victim:
                victim.sendall(b"boom")
                if model != "blocking":
                    assert expect_eof(victim, timeout=5), "the raising connection was not closed"
            if model == "blocking":
                with server.connect() as victim:
                    victim.sendall(b"boom")
                    assert expect_eof(victim, timeout=5), "the raising connection was not closed"
        server.canary()
        log = server.stderr()
        assert "Traceback" in log and "boom requested by the test" in log, log


def test_callback_order(model):
    """start -> CM [-> DR*] [-> ER?] -> CL, for half-close, reset and server stop."""
    with Server(model, protocol="faulty:Recording") as server:
        assert server.exchange(b"one") == b"one"  # CM DR ER CL
        assert server.exchange(b"") == b""  # CM ER CL
        sock = server.connect()
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        reset(sock)  # CM DR CL
        idle = server.connect()
        idle.sendall(b"y")
        assert recv_exactly(idle, 1) == b"y"
        time.sleep(0.2)
        assert server.stop()[0] == 0  # CM DR CL for the idle one
        idle.close()
        lines = re.findall(r"recording: (.*)", server.stderr())
    assert len(lines) == 4, lines
    for line in lines:
        assert re.fullmatch(r"CM( DR)*( ER)? CL", line.strip()), line
    assert "CM DR ER CL" in [line.strip() for line in lines]
    assert "CM ER CL" in [line.strip() for line in lines]
