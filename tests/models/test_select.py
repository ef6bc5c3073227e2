"""select above FD_SETSIZE: the connection is closed right after accept, one
warning, the others are served, and service resumes when descriptors free up."""

import socket
import time

import pytest

from iomodels.models.select import FD_SETSIZE

from helpers import Server, raise_nofile, recv_exactly

pytestmark = pytest.mark.timeout(120)

CLIENTS = FD_SETSIZE + 80


def is_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(10)


def test_beyond_fd_setsize():
    raise_nofile(CLIENTS + 200)
    with Server("select", protocol="echo") as server:
        clients = []
        try:
            for _ in range(CLIENTS):
                clients.append(socket.create_connection((server.host, server.port), timeout=10))
            time.sleep(1.0)
            closed = [sock for sock in clients if is_closed(sock)]
            served = [sock for sock in clients if sock not in closed]
            # ~6 descriptors are the server's own (stdio, listener, wakeup pair).
            assert 60 <= len(closed) <= 100, f"{len(closed)} closed of {CLIENTS}"
            assert len(served) >= FD_SETSIZE - 20
            for sock in served[:5] + served[-5:]:
                sock.sendall(b"still served")
                assert recv_exactly(sock, 12) == b"still served"
            assert server.stderr().count("cannot watch descriptor") == 1, server.stderr()[-2000:]
            for sock in served[:50]:  # free some descriptors
                sock.close()
            time.sleep(0.5)
            server.canary()  # accepted and served again
            assert server.proc.poll() is None
        finally:
            for sock in clients:
                sock.close()
