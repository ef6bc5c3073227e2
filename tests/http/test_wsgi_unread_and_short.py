"""WSGI apps that leave part of the exchange undone, on every model (worker
mode, the thread mode of the blocking models, and --app-inline):

- an app that answers without reading its request body (a 401 before an
  upload): the rest of the body is read and dropped, the body timers run, and
  the next request on the connection is served, sent after the answer or
  pipelined behind the body; past DISCARD_MAX dropped, the connection closes.
  (The event-loop models used to pause reading for the buffered body and
  never resume it: the connection hung for good, no timer armed.)
- an app whose body is shorter than its Content-Length: what it produced goes
  out, then the connection is cut; longer: Content-Length bytes go out, then
  the connection closes; both are logged, the same way on every model.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from test_wsgi import LOOP_MODELS, wsgi_server
from wire import closed_by_peer, get, read_responses, split_response

from iomodels.protocols.http.wsgi_handler import DISCARD_MAX
from iomodels.protocols.http.wsgi_streams import INPUT_HIGH

from helpers import model_params

BODY_SIZE = 2 * 1024 * 1024 + 1  # well past INPUT_HIGH: the loop models paused reading for it
assert BODY_SIZE > 4 * INPUT_HIGH
HEADER_S = 3  # --header-timeout: also the body-stall timer


def _params() -> list:
    params = []
    for param in model_params():
        model = param.values[0]
        params.append(pytest.param((model, False), id=param.id, marks=param.marks))
        if model in LOOP_MODELS:
            params.append(pytest.param((model, True), id=f"{param.id}-inline", marks=param.marks))
    return params


@pytest.fixture(scope="module", params=_params())
def server(request):
    model, inline = request.param
    args = ["--header-timeout", str(HEADER_S), "--keepalive-timeout", str(HEADER_S)]
    with wsgi_server(model, "unread_apps:app", *args, *(["--app-inline"] if inline else [])) as server:
        server.inline = inline
        yield server


def connect(server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """sendall() on a thread: the server may answer before it has read it all,
    and a client that only sends would never see the answer (nor the hang)."""

    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server closed: the test says whether it should have

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


def noread_request(size: int) -> bytes:
    return b"POST /noread HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % size


def read_to_eof(sock: socket.socket, timeout: float = 10) -> bytes:
    data = b""
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def wait_for_log(server, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + 5
    while server.stderr().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.stderr()


def test_unread_body_then_the_next_request_on_the_connection(server) -> None:
    with connect(server) as sock:
        for i in range(3):  # the pause depends on how the body arrives: a few times
            sender = send_in_background(sock, noread_request(BODY_SIZE) + b"y" * BODY_SIZE)
            [r] = read_responses(sock, 1)
            assert (r.status, r.body) == (401, b"unauthorized\n")
            sender.join(10)
            assert not sender.is_alive(), "the server stopped reading the unread body"
            sock.sendall(get(b"/after-%d" % i))
            [r] = read_responses(sock, 1)
            assert (r.status, r.body) == (200, b"/after-%d" % i)


def test_unread_body_with_a_pipelined_request_behind_it(server) -> None:
    with connect(server) as sock:
        data = noread_request(BODY_SIZE) + b"y" * BODY_SIZE + get(b"/pipelined") + get(b"/and-more")
        sender = send_in_background(sock, data)
        rejected, after, more = read_responses(sock, 3)
        assert (rejected.status, after.body, more.body) == (401, b"/pipelined", b"/and-more")
        sender.join(10)


def test_unread_body_that_stalls_is_closed_by_the_body_timer(server) -> None:
    with connect(server) as sock:
        sender = send_in_background(sock, noread_request(BODY_SIZE) + b"y" * (BODY_SIZE // 2))
        if not server.inline:  # else the app waits for the whole body: no answer, the same timer
            [r] = read_responses(sock, 1)
            assert r.status == 401
        sender.join(10)
        start = time.monotonic()
        assert closed_by_peer(sock, timeout=HEADER_S * 1.25 + 10), "no timer closed the stalled body"
        assert time.monotonic() - start < HEADER_S * 1.25 + 8


def test_unread_body_past_the_discard_bound_closes_the_connection(server) -> None:
    if server.inline:
        pytest.skip("--app-inline buffers the whole body before the app runs (--max-body bounds it)")
    size = DISCARD_MAX + 8 * 1024 * 1024
    with connect(server) as sock:
        sock.sendall(noread_request(size))
        sender = send_in_background(sock, b"y" * size + get(b"/never"))
        data = read_to_eof(sock)
        sender.join(10)
    parsed = split_response(data)
    assert parsed is not None and parsed[0].status == 401 and not parsed[1], data[:300]
    assert "answered without reading its request body: closing" in wait_for_log(server, "closing after")


@pytest.mark.parametrize("path", [b"/short", b"/short-gen"])
def test_body_shorter_than_its_content_length_goes_out_then_the_cut(server, path: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(get(path) + get(b"/never"))
        data = read_to_eof(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nContent-Length: 100" in head, data
    assert body == b"short"
    log = wait_for_log(server, "Content-Length 100 but a body of 5 bytes", 1)
    assert "unread_apps" not in log or "app" in log  # the message names the app (its repr)
    assert "Content-Length 100 but a body of 5 bytes; the connection is cut" in log


@pytest.mark.parametrize("path", [b"/long", b"/long-gen"])
def test_body_longer_than_its_content_length_is_cut_to_it_then_closed(server, path: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(get(path) + get(b"/never"))
        data = read_to_eof(sock)
    parsed = split_response(data)
    assert parsed is not None, data
    response, rest = parsed
    assert (response.status, response.body, rest) == (200, b"too", b"")
    log = wait_for_log(server, "Content-Length 3 but a body of 7 bytes; sent 3")
    assert "Content-Length 3 but a body of 7 bytes; sent 3, then the connection closes" in log


def test_the_log_names_the_app(server) -> None:
    with connect(server) as sock:
        sock.sendall(get(b"/short"))
        read_to_eof(sock)
    log = wait_for_log(server, "Content-Length 100")
    assert "WSGI app <function app at" in log
