"""The http timers over real sockets, on every model: an idle keep-alive
connection, a connection that never sends, a stalled body.

These need ``transport.set_idle_timeout`` from every model's transport (the
loop branch); the sans-IO tests in test_protocol.py check which timer is
armed when, these check that the connection really ends."""

from __future__ import annotations

import socket
import time

import pytest
from wire import closed_by_peer, get, read_responses

from helpers import Server, model_params

KEEPALIVE_S = 0.5
HEADER_S = 1.0
# The loops check idle connections a quarter of the timeout apart: the close
# comes between 1 and 1.25 times the timeout; the rest is a loaded machine.
SLACK_S = 3.0


@pytest.fixture(scope="module", params=model_params())
def timed_server(request):
    args = ("--keepalive-timeout", str(KEEPALIVE_S), "--header-timeout", str(HEADER_S), "--threads", "16")
    with Server(request.param, *args, protocol="http") as server:
        yield server


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def seconds_to_close(sock: socket.socket) -> float:
    start = time.monotonic()
    assert closed_by_peer(sock, timeout=KEEPALIVE_S + HEADER_S + SLACK_S + 5)
    return time.monotonic() - start


def test_idle_keep_alive_connection_is_closed(timed_server: Server) -> None:
    with connect(timed_server) as sock:
        sock.sendall(get(b"/plaintext"))
        assert read_responses(sock, 1)[0].status == 200
        took = seconds_to_close(sock)
    assert KEEPALIVE_S * 0.9 <= took < KEEPALIVE_S + SLACK_S


def test_connection_that_never_sends_is_closed_at_the_header_timeout(timed_server: Server) -> None:
    with connect(timed_server) as sock:
        took = seconds_to_close(sock)
    assert HEADER_S * 0.9 <= took < HEADER_S + SLACK_S


def test_stalled_body_is_closed(timed_server: Server) -> None:
    with connect(timed_server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        took = seconds_to_close(sock)
    assert HEADER_S * 0.9 <= took < HEADER_S + SLACK_S
    with connect(timed_server) as sock:  # and the server carries on
        sock.sendall(get(b"/plaintext"))
        assert read_responses(sock, 1)[0].status == 200
