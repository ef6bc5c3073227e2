"""``--protocol http --app MODULE:CALLABLE``: WSGI apps over real sockets, on
every model (the app on the connection's thread, on the worker pool, or
inline on the loop with --app-inline).

The app of tests/http/apps/wsgi_apps.py runs under wsgiref.validate, which
asserts PEP 3333 on the server's side too (environ, start_response, close());
a real Flask app runs on every model; the large tests check that a 64 MiB
response and a 64 MiB upload stream through with bounded memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from wire import get, post, read_responses

from helpers import Server, model_params

APPS_DIR = Path(__file__).resolve().parent / "apps"
BLOCK = bytes(range(256)) * 256  # /stream's block of 64 KiB
LOOP_MODELS = ("epoll", "io_uring", "asyncio")  # also served with --app-inline


@contextlib.contextmanager
def wsgi_server(model: str, app: str, *args: str):
    """A server of ``app`` (in tests/http/apps/), and the file its iterables' close() log to."""
    fd, close_log = tempfile.mkstemp(prefix="wsgi-close-")
    os.close(fd)
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "WSGI_TEST_CLOSE_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS_DIR), saved["PYTHONPATH"]]))
    os.environ["WSGI_TEST_CLOSE_LOG"] = close_log
    try:
        server = Server(model, "--app", app, "--threads", "16", *args, protocol="http")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    server.close_log = Path(close_log)
    try:
        with server:
            yield server
    finally:
        server.close_log.unlink(missing_ok=True)


def _inline_params() -> list:
    params = []
    for param in model_params():
        params.append(pytest.param((param.values[0], False), id=param.id, marks=param.marks))
        if param.values[0] in LOOP_MODELS:
            params.append(pytest.param((param.values[0], True), id=f"{param.id}-inline", marks=param.marks))
    return params


@pytest.fixture(scope="module", params=_inline_params())
def validated(request):
    model, inline = request.param
    with wsgi_server(model, "wsgi_apps:validated", *(["--app-inline"] if inline else [])) as server:
        server.inline = inline
        yield server


@pytest.fixture(scope="module", params=model_params())
def flask_server(request):
    with wsgi_server(request.param, "flask_app:app") as server:
        yield server


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def no_tracebacks(server: Server) -> None:
    log = server.stderr()
    assert "Traceback" not in log and "AssertionError" not in log, log[-3000:]


def test_validated_app_on_one_keep_alive_connection(validated: Server) -> None:
    with connect(validated) as sock:
        sock.sendall(get(b"/plaintext"))
        [r] = read_responses(sock, 1)
        # The validator wraps the app's list in an iterator: streamed, so chunked.
        assert (r.status, r.body, r.headers[b"transfer-encoding"]) == (200, b"Hello, World!", b"chunked")
        sock.sendall(get(b"/environ?q=%20x", b"X-Test: yes", b"X_Test: spoofed"))
        environ = json.loads(read_responses(sock, 1)[0].body)
        assert environ["QUERY_STRING"] == "q=%20x" and environ["HTTP_X_TEST"] == "yes"
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"], environ["REMOTE_ADDR"]) == (
            "",
            "/environ",
            "127.0.0.1",
        )
        sock.sendall(post(b"/upload", b"x" * 300_000, b"Content-Type: application/x-test"))
        digest = hashlib.sha256(b"x" * 300_000).hexdigest()
        assert read_responses(sock, 1)[0].body == f"300000 {digest}".encode()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert read_responses(sock, 1)[0].status == 100  # before the body is sent
        sock.sendall(b"12345")
        assert read_responses(sock, 1)[0].body == f"5 {hashlib.sha256(b'12345').hexdigest()}".encode()
        sock.sendall(post(b"/lines", b"first line\nsecond\nthird\n"))
        assert read_responses(sock, 1)[0].body == b"11|first line|2"
        sock.sendall(get(b"/stream?count=3&size=1024"))
        [r] = read_responses(sock, 1)
        assert r.headers[b"transfer-encoding"] == b"chunked" and r.body == BLOCK[:1024] * 3
        sock.sendall(get(b"/file"))
        assert read_responses(sock, 1)[0].body == (APPS_DIR / "wsgi_apps.py").read_bytes()
        sock.sendall(get(b"/write") + get(b"/created") + get(b"/empty") + get(b"/plaintext", method=b"HEAD"))
        write, created, empty, head = read_responses(sock, 4, head_only={3})
        assert (write.status, write.body) == (200, b"written then returned")
        assert (created.status, created.headers[b"location"], created.body) == (201, b"/x", b"made")
        assert (empty.status, empty.body) == (204, b"")
        assert head.status == 200 and head.headers[b"content-type"] == b"text/plain"
        sock.sendall(get(b"/nowhere"))
        assert read_responses(sock, 1)[0].status == 404
    no_tracebacks(validated)


def test_pipelined_requests_answer_in_order(validated: Server) -> None:
    requests, expected = [], []
    for i in range(30):
        if i % 3 == 0:
            requests.append(post(b"/echo", b"body %d" % i))
            expected.append(b"body %d" % i)
        elif i % 3 == 1:
            requests.append(get(b"/stream?count=2&size=256"))
            expected.append(BLOCK[:256] * 2)
        else:
            requests.append(get(b"/plaintext"))
            expected.append(b"Hello, World!")
    with connect(validated) as sock:
        sock.sendall(b"".join(requests))
        assert [r.body for r in read_responses(sock, len(requests))] == expected


def test_http10_streamed_response_ends_with_the_close(validated: Server) -> None:
    with connect(validated) as sock:
        sock.sendall(get(b"/stream?count=2&size=512", version=b"1.0"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Transfer-Encoding" not in head and body == BLOCK[:512] * 2


def test_an_app_that_raises_gets_500_or_a_cut_and_the_server_carries_on(validated: Server) -> None:
    with connect(validated) as sock:
        sock.sendall(get(b"/raise"))
        [r] = read_responses(sock, 1)
        assert r.status == 500 and r.headers[b"connection"] == b"close"
    with connect(validated) as sock:
        sock.sendall(get(b"/raise-late"))
        data = b""
        sock.settimeout(10)
        while chunk := sock.recv(65536):
            data += chunk
        # The head and the first block went out; then the connection is cut: no last chunk.
        assert (
            data.startswith(b"HTTP/1.1 200 ") and b"first block" in data and not data.endswith(b"0\r\n\r\n")
        )
    deadline = time.monotonic() + 5
    while validated.stderr().count("the app failed on purpose") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = validated.stderr()
    assert "Traceback" in log and "after its headers" in log
    with connect(validated) as sock:
        sock.sendall(get(b"/plaintext"))
        assert read_responses(sock, 1)[0].body == b"Hello, World!"


def test_close_is_called_when_the_client_goes_away(validated: Server) -> None:
    tag = f"gone-{time.monotonic_ns()}"
    with connect(validated) as sock:
        sock.sendall(get(b"/stream?count=100000&size=65536&delay=0.002&tag=" + tag.encode()))
        got = 0
        while got < 1024 * 1024:
            got += len(sock.recv(65536))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST on close
    deadline = time.monotonic() + 5
    while f"closed {tag}" not in validated.close_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"closed {tag}" in validated.close_log.read_text(), "the iterable was not closed"
    with connect(validated) as sock:  # and the server carries on
        sock.sendall(get(b"/plaintext"))
        assert read_responses(sock, 1)[0].status == 200


def test_64_mib_generator_read_slowly_keeps_memory_bounded(validated: Server) -> None:
    count = 1024  # 64 KiB blocks: 64 MiB, generated on the fly
    with connect(validated) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(get(b"/plaintext"))  # the connection's thread or process is there: then measure
        read_responses(sock, 1)
        baseline = validated.rss_bytes()
        sock.sendall(get(b"/stream?count=%d&size=65536" % count))
        time.sleep(1.0)  # read nothing: the server must wait, not buffer
        grown = validated.rss_bytes() - baseline
        assert grown < 16 * 1024 * 1024, f"the server grew by {grown} bytes while the client read nothing"
        [r] = read_responses(sock, 1, timeout=60)
    assert len(r.body) == count * len(BLOCK) and r.body[:65536] == BLOCK and r.body[-65536:] == BLOCK


def test_64_mib_upload_streams_through_wsgi_input(validated: Server) -> None:
    if validated.inline:
        pytest.skip("--app-inline buffers the body before the app runs (documented)")
    total = 64 * 1024 * 1024
    payload = BLOCK * (total // len(BLOCK))
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], validated.rss_bytes() - baseline)

    watcher = threading.Thread(target=watch)
    baseline = 0
    try:
        with connect(validated) as sock:
            sock.sendall(get(b"/plaintext"))
            read_responses(sock, 1)
            baseline = validated.rss_bytes()
            watcher.start()
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
            sock.sendall(payload)
            [r] = read_responses(sock, 1, timeout=60)
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join()
    assert r.body == f"{total} {hashlib.sha256(payload).hexdigest()}".encode()
    assert peak[0] < 24 * 1024 * 1024, f"the server grew by {peak[0]} bytes for a 64 MiB upload"


def test_flask_app(flask_server: Server) -> None:
    with connect(flask_server) as sock:
        sock.sendall(get(b"/"))
        assert read_responses(sock, 1)[0].body == b"flask says hello"
        sock.sendall(get(b"/items/1") + get(b"/items/2"))
        found, missing = read_responses(sock, 2)
        assert json.loads(found.body) == {"id": 1, "name": "one"} and missing.status == 404
        body = json.dumps({"numbers": [1, 2, 3]}).encode()
        sock.sendall(post(b"/json", body, b"Content-Type: application/json"))
        [r] = read_responses(sock, 1)
        assert r.status == 201 and json.loads(r.body) == {
            "received": {"numbers": [1, 2, 3]},
            "doubled": [2, 4, 6],
        }
        form = b"name=Ada+Lovelace&age=36"
        sock.sendall(post(b"/form", form, b"Content-Type: application/x-www-form-urlencoded"))
        assert read_responses(sock, 1)[0].body == b"hello Ada Lovelace, you are 36"
        sock.sendall(get(b"/stream?count=50"))
        [r] = read_responses(sock, 1)
        assert r.headers[b"transfer-encoding"] == b"chunked"
        assert r.body == "".join(f"line {i}\n" for i in range(50)).encode()
        sock.sendall(get(b"/file"))
        [r] = read_responses(sock, 1)
        assert r.body == (APPS_DIR / "flask_app.py").read_bytes()
        assert r.headers[b"content-length"] == str(len(r.body)).encode()
        sock.sendall(get(b"/error"))
        assert read_responses(sock, 1)[0].status == 500
    assert "a Flask view that fails" in flask_server.stderr()
    with connect(flask_server) as sock:
        sock.sendall(get(b"/items/1", method=b"HEAD"))
        [r] = read_responses(sock, 1, head_only={0})
        assert r.status == 200 and r.headers[b"content-type"] == b"application/json"
