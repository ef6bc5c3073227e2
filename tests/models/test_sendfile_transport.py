"""transport.sendfile(file, offset, count, done=) on our own event loops
(the readiness models and io_uring), in this process, so that the kernel
path is asserted, not assumed: os.sendfile is counted on the readiness
models (patched), and on io_uring os.sendfile is never called while the
loop's statistics count the splice SQEs.

What the contract (core/protocol.py) promises, checked here: bytes written
before the call go first and bytes written after it (before ``done``) go
after the whole file; ``done`` is called once with the count, or with the
error when the client goes away mid-file; close() right after sendfile()
sends everything first; offset/count are honoured; a reader that never
reads holds nothing of the file in the server (the idle timeout ends it).
Over a server process, every model (sigio and the blocking ones included)
orders before / file / after (models/sendfile_protocols.py); the asyncio-
shaped models in-process are tests/models/test_sendfile_asyncio.py, and the
HTTP/WSGI use, on every model, tests/http/test_sendfile.py.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time

import pytest

from iomodels import models
from iomodels.core.protocol import Protocol

from helpers import Server, model_params, read_slowly, recv_exactly, serve_in_this_thread

pytestmark = pytest.mark.timeout(60)

# Not sigio: its realtime signals would reach this process's client thread,
# which does not block them (serve_in_this_thread); tests/http/test_sendfile.py
# covers sigio over a server process.
LOOP_MODELS = ("epoll", "poll", "select", "nonblocking", "io_uring")
BLOCKING = ("blocking", "threads", "processes", "threadpool")
ASYNCIO_SHAPED = ("asyncio", "uvloop", "aio")
SIZE = 3 * 1024 * 1024 + 123  # several socket buffers, not a multiple of anything
CONTENT = os.urandom(SIZE)


def loop_models() -> list:
    params = []
    for name in LOOP_MODELS:
        ok, reason = models.available(name)
        marks = [] if ok else [pytest.mark.skip(reason=f"{name}: {reason}")]
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "payload"
    path.write_bytes(CONTENT)
    return path


@pytest.fixture
def counted_sendfile(monkeypatch):
    """os.sendfile, counted (the readiness loops look it up per transfer)."""
    calls = []
    real = os.sendfile

    def sendfile(out_fd, in_fd, offset, count, *args):
        calls.append(count)
        return real(out_fd, in_fd, offset, count, *args)

    monkeypatch.setattr(os, "sendfile", sendfile)
    return calls


class Recorder:
    """What happened to the transfers and connections, for the test to check."""

    def __init__(self) -> None:
        self.events: list[tuple] = []


def make_protocol(path, recorder: Recorder, offset: int, count: int | None, *, close_at_once=False):
    class FileThenTail(Protocol):
        """On the first bytes: write, sendfile, write (queued behind the
        file), then close once done (or at once: close must flush it all)."""

        def data_received(self, data: bytes) -> None:
            # A small send buffer: the file takes many rounds of "socket full,
            # wait for writability" (and a client that goes away finds it unsent).
            self.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            self.file = open(path, "rb")  # noqa: SIM115 - closed in done
            self.transport.write(b"before|")
            self.transport.sendfile(self.file, offset, count, done=self.done)
            self.transport.write(b"|after")
            if close_at_once:
                self.transport.close()

        def done(self, future) -> None:
            try:
                recorder.events.append(("done", future.result()))
            except Exception as exc:
                recorder.events.append(("failed", type(exc).__name__))
            self.file.close()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"|done")
                self.transport.close()

        def connection_lost(self, exc) -> None:
            recorder.events.append(("lost", type(exc).__name__ if exc else None))
            super().connection_lost(exc)

    return FileThenTail


def recv_all(sock: socket.socket, timeout: float = 20.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while chunk := sock.recv(1 << 20):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("model", loop_models())
@pytest.mark.parametrize(("offset", "count"), [(0, None), (1000, 2_000_001)], ids=["whole", "range"])
def test_writes_before_and_after_keep_their_order(model, offset, count, payload, counted_sendfile):
    recorder = Recorder()
    end = SIZE if count is None else offset + count

    def drive(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"go")
            got = recv_all(sock)
        assert got == b"before|" + CONTENT[offset:end] + b"|after|done", len(got)

    protocol = make_protocol(payload, recorder, offset, count)
    server = serve_in_this_thread(models.server_class(model), drive, protocol)
    assert recorder.events == [("done", end - offset), ("lost", None)]
    stats = server.statistics()
    assert stats["sendfile_bytes"] == end - offset
    if model == "io_uring":
        assert not counted_sendfile and stats["sendfile_calls"] >= 2  # splices, no os.sendfile
    else:
        assert counted_sendfile and stats["sendfile_calls"] == len(counted_sendfile)


@pytest.mark.parametrize("model", loop_models())
def test_close_right_after_sendfile_sends_everything_first(model, payload, counted_sendfile):
    recorder = Recorder()

    def drive(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"go")
            got = recv_all(sock)
        assert got == b"before|" + CONTENT + b"|after", len(got)

    protocol = make_protocol(payload, recorder, 0, None, close_at_once=True)
    serve_in_this_thread(models.server_class(model), drive, protocol)
    assert recorder.events == [("done", SIZE), ("lost", None)]


def small_window_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    return sock


@pytest.mark.parametrize("model", loop_models())
def test_a_client_that_goes_away_mid_file_fails_the_transfer(model, payload, counted_sendfile):
    recorder = Recorder()

    def drive(port: int) -> None:
        sock = small_window_client(port)
        sock.sendall(b"go")
        recv_exactly(sock, 100_000)  # part of the file, then a reset
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        deadline = time.monotonic() + 10
        while len(recorder.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The server carries on.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
            other.sendall(b"go")
            assert recv_all(other) == b"before|" + CONTENT + b"|after|done"

    serve_in_this_thread(models.server_class(model), drive, make_protocol(payload, recorder, 0, None))
    # done may come after connection_lost: on io_uring it waits for the
    # cancelled splices, the kernel holds the file until then.
    failed, lost = sorted(recorder.events[:2])
    assert failed[0] == "failed" and failed[1] in ("ConnectionResetError", "BrokenPipeError"), recorder.events
    assert lost[0] == "lost" and lost[1] is not None, recorder.events
    assert recorder.events[2:] == [("done", SIZE), ("lost", None)]


class StuckReader(Protocol):
    """Send the file to a client that never reads; the idle timeout ends it."""

    path = None
    recorder = None

    def data_received(self, data: bytes) -> None:
        self.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        self.transport.set_idle_timeout(0.5)
        self.file = open(self.path, "rb")  # noqa: SIM115 - closed in done
        self.transport.sendfile(self.file, done=self.done)

    def done(self, future) -> None:
        try:
            self.recorder.events.append(("done", future.result()))
        except Exception as exc:
            self.recorder.events.append(("failed", type(exc).__name__))
        self.file.close()

    def connection_lost(self, exc) -> None:
        self.recorder.events.append(("lost", type(exc).__name__ if exc else None))
        super().connection_lost(exc)


@pytest.mark.parametrize("model", loop_models())
def test_a_reader_that_never_reads_holds_no_file_bytes_and_times_out(model, payload, counted_sendfile):
    recorder = Recorder()
    StuckReader.path, StuckReader.recorder = payload, recorder
    held = []

    def drive(port: int) -> None:
        sock = small_window_client(port)
        sock.sendall(b"go")
        time.sleep(0.2)
        held.append(server_ref[0]._connections and next(iter(server_ref[0]._connections.values())))
        deadline = time.monotonic() + 5
        while len(recorder.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # not reading: the idle timeout must end it
        sock.close()

    server_ref: list = []
    cls = models.server_class(model)

    class Remember(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            server_ref.append(self)

    Remember.name = cls.name
    serve_in_this_thread(Remember, drive, StuckReader)
    conn = held[0]
    assert conn, "the connection was gone before the check"
    assert conn.get_write_buffer_size() == 0  # the file is the kernel's: nothing buffered here
    assert sorted(recorder.events) == [("failed", "TimeoutError"), ("lost", "TimeoutError")], recorder.events


@pytest.mark.skipif(not models.available("io_uring")[0], reason="io_uring unavailable")
def test_io_uring_out_of_descriptors_for_the_pipe_fails_only_the_transfer(payload, monkeypatch):
    """The transfer's pipe cannot be made (EMFILE): done gets the error, the
    output written after the file still goes, the server carries on."""
    recorder = Recorder()

    def no_pipe(flags: int = 0):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pipe2", no_pipe)

    def drive(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"go")
            assert recv_all(sock) == b"before||after|done"

    serve_in_this_thread(models.server_class("io_uring"), drive, make_protocol(payload, recorder, 0, None))
    assert recorder.events == [("failed", "OSError"), ("lost", None)]


@pytest.mark.parametrize("model", model_params())
def test_every_model_orders_writes_around_the_file(model, payload):
    """Over a server process, every model (sigio and the blocking ones
    included): before, the file, what was written after the call, done's."""
    with Server(model, protocol="models.sendfile_protocols:FileBetweenWrites") as server:
        with server.connect() as sock:
            sock.sendall(str(payload).encode() + b"\n")
            got = recv_all(sock)
        log = server.stderr()
    # Blocking: done runs inside the call, so its b"|after" and close come
    # before the write that follows the call.  asyncio-shaped: no write
    # until done.  Our loops: queued behind the file.
    during = b"|during" if model not in BLOCKING + ASYNCIO_SHAPED else b""
    assert got == b"before|" + CONTENT + during + b"|after", (len(got), log[-2000:])
    assert f"sendfile-test done: {SIZE}" in log, log[-2000:]


class SlowButSteady(StuckReader):
    """The stuck reader's protocol with a 0.4 s idle timeout: the file must
    count as progress while it leaves, or the reader below, whose download
    takes longer than that, is cut."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.set_idle_timeout(0.4)


@pytest.mark.parametrize("model", [p for p in loop_models() if p.id in ("epoll", "io_uring")])
def test_a_reader_slower_than_a_piece_per_timeout_is_not_cut(model, payload):
    recorder = Recorder()
    SlowButSteady.path, SlowButSteady.recorder = payload, recorder
    serve_in_this_thread(models.server_class(model), lambda port: read_slowly(port, CONTENT), SlowButSteady)
    assert recorder.events[0] == ("done", SIZE), recorder.events
