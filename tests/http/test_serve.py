"""``--protocol http`` over real sockets, on every model: routes, keep-alive,
pipelining order, HTTP/1.0, HEAD, 100-continue, chunked uploads, curl, and
every bad input (the server answering another client afterwards)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest
from wire import closed_by_peer, get, post, read_responses

from iomodels.protocols.upper import upper_reference

from helpers import Server, model_params

MAX_BODY = 32 * 1024 * 1024
HEADER_TIMEOUT_S = 1.0


@pytest.fixture(scope="module", params=model_params())
def http_server(request):
    args = ("--max-body", str(MAX_BODY), "--header-timeout", str(HEADER_TIMEOUT_S), "--threads", "16")
    with Server(request.param, *args, protocol="http") as server:
        yield server


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def ask(server: Server, data: bytes, count: int = 1, head_only=()):
    with connect(server) as sock:
        sock.sendall(data)
        return read_responses(sock, count, head_only)


def test_routes_on_one_keep_alive_connection(http_server: Server) -> None:
    with connect(http_server) as sock:
        sock.sendall(get(b"/plaintext"))
        [r] = read_responses(sock, 1)
        assert (r.status, r.body, r.headers[b"content-type"]) == (200, b"Hello, World!", b"text/plain")
        sock.sendall(get(b"/json"))
        [r] = read_responses(sock, 1)
        assert r.body == b'{"message":"Hello, World!"}'
        sock.sendall(get(b"/"))
        [r] = read_responses(sock, 1)
        assert f"model {http_server.model}".encode() in r.body and b"/upper" in r.body
        sock.sendall(get(b"/health"))
        assert read_responses(sock, 1)[0].status == 200
        sock.sendall(post(b"/echo", b"ping \x00\xff"))
        [r] = read_responses(sock, 1)
        assert (r.status, r.body) == (200, b"ping \x00\xff")
        sock.sendall(post(b"/upper", "straße".encode()))
        assert read_responses(sock, 1)[0].body == b"STRASSE"
        sock.sendall(get(b"/missing") + get(b"/echo") + get(b"/json", method=b"HEAD"))
        missing, wrong, head = read_responses(sock, 3, head_only={2})
        assert (missing.status, wrong.status, wrong.headers[b"allow"]) == (404, 405, b"POST")
        assert head.status == 200 and head.headers[b"content-length"] == b"27"
        sock.sendall(get(b"/plaintext"))  # still the same connection
        assert read_responses(sock, 1)[0].status == 200


def test_pipelined_requests_are_answered_in_order(http_server: Server) -> None:
    requests, expected = [], []
    for i in range(60):
        kind = i % 4
        if kind == 0:
            requests.append(get(b"/plaintext"))
            expected.append(b"Hello, World!")
        elif kind == 1:
            requests.append(post(b"/echo", b"body %d" % i))
            expected.append(b"body %d" % i)
        elif kind == 2:
            requests.append(post(b"/upper", b"up %d" % i))
            expected.append(b"UP %d" % i)
        else:
            requests.append(get(b"/json"))
            expected.append(b'{"message":"Hello, World!"}')
    responses = ask(http_server, b"".join(requests), len(requests))
    assert [r.body for r in responses] == expected


def test_http10_with_and_without_keep_alive(http_server: Server) -> None:
    with connect(http_server) as sock:
        sock.sendall(get(b"/plaintext", version=b"1.0"))
        [r] = read_responses(sock, 1)
        assert r.body == b"Hello, World!" and r.headers[b"connection"] == b"close"
        assert closed_by_peer(sock)
    with connect(http_server) as sock:
        sock.sendall(get(b"/plaintext", b"Connection: keep-alive", version=b"1.0"))
        [r] = read_responses(sock, 1)
        assert r.headers[b"connection"] == b"keep-alive"
        sock.sendall(post(b"/echo", b"streamed", b"Connection: keep-alive", version=b"1.0"))
        data = b""
        while chunk := sock.recv(65536):  # no chunked coding in 1.0: the close ends the body
            data += chunk
        assert b"Transfer-Encoding" not in data and data.endswith(b"\r\n\r\nstreamed")


def test_connection_close_is_honoured(http_server: Server) -> None:
    with connect(http_server) as sock:
        sock.sendall(get(b"/json", b"Connection: close") + get(b"/plaintext"))
        data = b""
        sock.settimeout(10)
        while chunk := sock.recv(65536):
            data += chunk
        assert data.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in data


def test_expect_continue_then_chunked_upload_streams_back(http_server: Server) -> None:
    payload = bytes(range(256)) * 2048  # 512 KiB, more than any socket buffer holds
    with connect(http_server) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        [cont] = read_responses(sock, 1)
        assert cont.status == 100

        def upload() -> None:
            for i in range(0, len(payload), 8192):
                piece = payload[i : i + 8192]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")

        sender = threading.Thread(target=upload)
        sender.start()
        try:
            [r] = read_responses(sock, 1, timeout=30)
        finally:
            sender.join(30)
        assert r.status == 200 and r.body == payload
        sock.sendall(get(b"/plaintext"))
        assert read_responses(sock, 1)[0].body == b"Hello, World!"


def test_upper_over_a_body_split_anywhere(http_server: Server) -> None:
    text = "héllo straße ǆ ".encode() * 300
    with connect(http_server) as sock:
        sock.sendall(b"POST /upper HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(text))
        for i in range(0, len(text), 7):  # 7: splits most multi-byte characters
            sock.sendall(text[i : i + 7])
        [r] = read_responses(sock, 1)
        assert r.body == upper_reference(text)


BAD_INPUTS = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: v\r\n" * 101 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET /plaintext HTTP/1.1\r\n\r\n", 400),
    (b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
]


def test_bad_inputs_get_a_status_and_a_close_and_others_carry_on(http_server: Server) -> None:
    # `blocking` serves one connection at a time (its lesson): no bystander there.
    bystander = None if http_server.model == "blocking" else connect(http_server)
    try:
        if bystander is not None:
            bystander.sendall(get(b"/plaintext"))
            assert read_responses(bystander, 1)[0].status == 200
        for data, status in BAD_INPUTS:
            with connect(http_server) as sock:
                sock.sendall(data)
                [r] = read_responses(sock, 1)
                assert (r.status, r.headers[b"connection"]) == (status, b"close"), data[:60]
                assert closed_by_peer(sock)
            if bystander is not None:  # the connection opened before: untouched
                bystander.sendall(get(b"/plaintext"))
                assert read_responses(bystander, 1)[0].status == 200
    finally:
        if bystander is not None:
            bystander.close()
    assert ask(http_server, get(b"/health"))[0].status == 200  # and a new client


def test_chunked_body_over_the_limit_is_cut(http_server: Server) -> None:
    with connect(http_server) as sock:
        sock.sendall(b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        [r] = read_responses(sock, 1)  # answered at once; the body is being skipped
        assert r.status == 404
        piece = b"x" * 65536
        try:
            for _ in range(MAX_BODY // len(piece) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_peer(sock)
    assert ask(http_server, get(b"/plaintext"))[0].status == 200


def test_slowloris_is_cut_at_the_header_deadline(http_server: Server) -> None:
    with connect(http_server) as sock:
        start = time.monotonic()
        closed = False
        for byte in b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - start > HEADER_TIMEOUT_S + 0.5:
                break
        closed = closed or closed_by_peer(sock, timeout=5)
    assert closed and time.monotonic() - start < HEADER_TIMEOUT_S + 8
    assert ask(http_server, get(b"/plaintext"))[0].status == 200


def test_echo_upload_that_is_not_read_is_held_back_not_buffered(http_server: Server) -> None:
    """The client sends 24 MiB and reads nothing: the server must stop reading
    (back-pressure) rather than buffer it; then everything comes back."""
    total = 24 * 1024 * 1024
    payload = bytes(range(251)) * (total // 251 + 1)
    payload = payload[:total]
    baseline = http_server.rss_bytes()
    with connect(http_server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        sock.setblocking(False)
        view = memoryview(payload)
        stalled_since = None
        deadline = time.monotonic() + 20
        while view and time.monotonic() < deadline:
            try:
                view = view[sock.send(view[: 1024 * 1024]) :]
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)
        assert view, "the server took 24 MiB it could not send back: no back-pressure"
        grown = http_server.rss_bytes() - baseline
        assert grown < 16 * 1024 * 1024, f"server grew by {grown} bytes"
        sock.setblocking(True)
        rest = bytes(view)
        sender = threading.Thread(target=sock.sendall, args=(rest,))
        sender.start()
        try:
            [r] = read_responses(sock, 1, timeout=60)
        finally:
            sender.join(60)
        assert r.status == 200 and r.body == payload


CURL = shutil.which("curl")


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_gets_correct_answers(http_server: Server) -> None:
    base = f"http://{http_server.host}:{http_server.port}"
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "20", f"{base}/plaintext", "-o", "-", f"{base}/json"],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert out.stdout == b'Hello, World!{"message":"Hello, World!"}'
    body = "é straße ".encode() * 40_000  # ~500 KiB: curl sends Expect: 100-continue
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "20", "--data-binary", "@-", f"{base}/upper"],
        input=body,
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert out.stdout == upper_reference(body)
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/echo"],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert out.stdout == b"405"
