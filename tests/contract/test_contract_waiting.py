"""Acceptance: who waits in the blocking models, beyond the conformance suite's
"one at a time" and "client N+1 waits": the next client of ``blocking`` once
the first half-closes, and the threadpool's default of 8 workers."""

import socket

import pytest

from helpers import Server, no_reply_within, recv_exactly, roundtrip

pytestmark = pytest.mark.timeout(60)

SILENCE = 1.0  # how long a waiting client must see nothing


def test_blocking_next_served_after_half_close(socks):
    """The first client half-closes: its output is flushed, it is closed, the next is served."""
    with Server("blocking", protocol="echo") as server:
        first = server.connect()
        socks.append(first)
        roundtrip(first, b"1")
        second = server.connect()
        socks.append(second)
        second.sendall(b"2")
        assert no_reply_within(second, SILENCE), "blocking served a second client at once"
        first.sendall(b"bye")
        first.shutdown(socket.SHUT_WR)
        assert recv_exactly(first, 3) == b"bye"
        assert recv_exactly(second, 1, what="the reply once the first half-closed") == b"2"


def test_threadpool_default_is_8_workers(socks):
    """Eight clients are served at once, the ninth waits for one of them to leave."""
    with Server("threadpool", protocol="echo") as server:
        clients = [server.connect() for _ in range(8)]
        socks.extend(clients)
        for i, sock in enumerate(clients):
            roundtrip(sock, b"%d" % i)
        ninth = server.connect()
        socks.append(ninth)
        ninth.sendall(b"9")
        assert no_reply_within(ninth, SILENCE), "a ninth client was served by the default pool"
        clients[0].close()
        assert recv_exactly(ninth, 1) == b"9"
