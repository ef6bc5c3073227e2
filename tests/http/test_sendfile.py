"""``wsgi.file_wrapper`` over a real file goes out through the kernel, on
every model (the app on the connection's thread, on the worker pool, or
inline on the loop with --app-inline): transport.sendfile (core/protocol.py).

The app (tests/http/apps/sendfile_app.py) returns a FileWrapper over an
8 MiB file whose close() it logs.  Checked per model: the body is
byte-exact; close() is called; the transport's own log line says which
kernel path moved it (os.sendfile, io_uring splice, loop.sendfile; uvloop
has no sendfile and says pread+write): asserted, not assumed; responses
pipelined before and after keep their order; seek/Content-Length are
honoured, and a file shorter than its Content-Length is cut; HEAD sends no
body; a BytesIO is iterated as before; a client that goes away mid-file gets
close() called and the server carries on; a reader that stalls costs the
server no file-sized memory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
import time
from pathlib import Path

import pytest
from wire import get, read_responses

from helpers import Server, model_params, recv_exactly

pytestmark = pytest.mark.timeout(120)

APPS_DIR = Path(__file__).resolve().parent / "apps"
SIZE = 8 * 1024 * 1024
CONTENT = os.urandom(SIZE)
LOOP_MODELS = ("epoll", "io_uring", "asyncio")  # also served with --app-inline
KERNEL_PATH = {"io_uring": "io_uring splice", "asyncio": "loop.sendfile", "aio": "loop.sendfile",
               "uvloop": "pread+write"}  # fmt: skip


def kernel_path(model: str) -> str:
    return KERNEL_PATH.get(model, "os.sendfile")


def _params() -> list:
    params = []
    for param in model_params():
        params.append(pytest.param((param.values[0], False), id=param.id, marks=param.marks))
        if param.values[0] in LOOP_MODELS:
            params.append(pytest.param((param.values[0], True), id=f"{param.id}-inline", marks=param.marks))
    return params


@pytest.fixture(scope="module")
def payload():
    fd, path = tempfile.mkstemp(prefix="sendfile-")
    os.write(fd, CONTENT)
    os.close(fd)
    yield path
    os.unlink(path)


@pytest.fixture(scope="module", params=_params())
def server(request, payload):
    model, inline = request.param
    fd, close_log = tempfile.mkstemp(prefix="sendfile-close-")
    os.close(fd)
    keys = ("PYTHONPATH", "WSGI_TEST_CLOSE_LOG", "SENDFILE_TEST_PATH")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS_DIR), saved["PYTHONPATH"]]))
    os.environ["WSGI_TEST_CLOSE_LOG"] = close_log
    os.environ["SENDFILE_TEST_PATH"] = payload
    try:
        flags = ["--app-inline"] if inline else []
        server = Server(model, "--app", "sendfile_app:app", *flags, protocol="http")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    server.model = model
    server.close_log = Path(close_log)
    try:
        with server:
            yield server
    finally:
        server.close_log.unlink(missing_ok=True)


def closes(server: Server) -> int:
    return server.close_log.read_text().count("closed\n")


def wait_for_closes(server: Server, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while closes(server) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert closes(server) >= count, f"close() called {closes(server)} times, expected {count}"


def connect(server: Server, **options: int) -> socket.socket:
    sock = socket.socket()
    for option, value in options.items():
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
    sock.connect((server.host, server.port))
    sock.settimeout(10)
    return sock


def no_tracebacks(server: Server) -> None:
    log = server.stderr()
    assert "Traceback" not in log, log[-3000:]


def test_file_wrapper_through_the_kernel_in_order(server: Server) -> None:
    before = closes(server)
    with connect(server) as sock:
        sock.sendall(
            get(b"/small?tag=a")
            + get(b"/file")
            + get(b"/small?tag=b")
            + get(b"/file?seek=1000&length=5000")
            + get(b"/file", method=b"HEAD")
            + get(b"/bytesio")
        )
        small_a, whole, small_b, part, head, iterated = read_responses(sock, 6, head_only={4})
    assert (small_a.body, small_b.body) == (b"small:a", b"small:b")
    assert whole.headers[b"content-length"] == b"%d" % SIZE and whole.body == CONTENT
    assert part.headers[b"content-length"] == b"5000" and part.body == CONTENT[1000:6000]
    assert head.headers[b"content-length"] == b"%d" % SIZE and head.body == b""
    assert iterated.body == CONTENT  # a BytesIO has no fileno: iterated, as before
    wait_for_closes(server, before + 3)  # the three files (the HEAD's too)
    log = server.stderr()
    path = kernel_path(server.model)
    assert f"{SIZE} bytes by {path}" in log, log[-3000:]
    assert f"5000 bytes by {path}" in log, log[-3000:]
    no_tracebacks(server)


def test_a_file_shorter_than_its_content_length_is_cut(server: Server) -> None:
    before = closes(server)
    with connect(server) as sock:
        sock.sendall(get(b"/file?seek=%d&length=100" % (SIZE - 40)))
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 100" in head and body == CONTENT[-40:]  # then the close: truncated
    wait_for_closes(server, before + 1)


def test_a_client_that_goes_away_mid_file(server: Server) -> None:
    before = closes(server)
    sock = connect(server, SO_RCVBUF=16384)
    sock.sendall(get(b"/file"))
    recv_exactly(sock, 200_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, mid-file
    wait_for_closes(server, before + 1)
    with connect(server) as other:  # the server carries on
        other.sendall(get(b"/file?seek=7&length=70000"))
        [r] = read_responses(other, 1)
        assert r.body == CONTENT[7:70007]
    no_tracebacks(server)


def test_a_stalled_reader_costs_no_file_sized_memory(server: Server) -> None:
    before = closes(server)
    sock = connect(server, SO_RCVBUF=16384)
    with contextlib.closing(sock):
        sock.sendall(get(b"/small"))  # first: the processes model forks for the connection
        read_responses(sock, 1)
        rss = server.rss_bytes()
        sock.sendall(get(b"/file"))
        time.sleep(0.4)  # the server has sent what the sockets hold; the rest waits
        grown = server.rss_bytes() - rss
        [r] = read_responses(sock, 1)
    assert r.body == CONTENT
    # The file is 8 MiB; the kernel holds what is in flight, the server at
    # most a HIGH_WATER of it (uvloop's read + write) plus allocator noise.
    assert grown < 3 * 1024 * 1024, f"the server grew {grown} bytes while the client stalled"
    wait_for_closes(server, before + 1)
