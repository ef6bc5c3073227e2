"""transport.sendfile on the asyncio-shaped models (asyncio, uvloop, aio), in
this process: the model's own wrapper (_Tracked and the _Transport proxy) on
the model's loop, a client on a thread.  The kernel path is asserted: the
loop's sendfile is counted on asyncio and aio, and uvloop, which has none,
says it fell back to read + write (sendfile_native False).  The contract
(core/protocol.py): what was written before goes first, the protocol writes
again after ``done`` (asyncio refuses a write during its sendfile), offset
and count are honoured, a client that goes away gets ``done`` an error and
connection_lost its own, and close() right after sendfile() sends the file
first.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading

import pytest

from iomodels import models
from iomodels.core.protocol import Protocol
from iomodels.core.server import ServerConfig, make_listener

from helpers import read_slowly, recv_exactly

pytestmark = pytest.mark.timeout(60)

SIZE = 3 * 1024 * 1024 + 77
CONTENT = os.urandom(SIZE)


def asyncio_models() -> list:
    params = []
    for name in ("asyncio", "uvloop", "aio"):
        ok, reason = models.available(name)
        marks = [] if ok else [pytest.mark.skip(reason=f"{name}: {reason}")]
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def serve(model: str, protocol_cls: type, client, path) -> tuple[list, list]:
    """Serve ``protocol_cls`` on ``model``'s loop until ``client(port)`` (a
    thread) returns; the events the protocols recorded, and the transports."""
    from iomodels.models.asyncio import _Tracked

    cls = models.server_class(model)
    listener = make_listener("127.0.0.1", 0, 16)
    port = listener.getsockname()[1]
    events: list = []
    transports: list = []

    def factory():
        protocol = protocol_cls()
        protocol.path, protocol.events, protocol.transports = path, events, transports
        return protocol

    server = cls(ServerConfig(model=model, protocol="echo", port=0), factory, listener, lambda: None)
    loop = server.new_event_loop()
    errors: list = []

    async def main() -> None:
        server._stop = asyncio.Event()
        server.closed = asyncio.Event()
        served = await loop.create_server(lambda: _Tracked(server), sock=listener)
        thread_done = asyncio.Event()

        def run_client() -> None:
            try:
                client(port)
            except BaseException as exc:
                errors.append(exc)
            finally:
                loop.call_soon_threadsafe(thread_done.set)

        thread = threading.Thread(target=run_client)
        thread.start()
        await thread_done.wait()
        thread.join(5)
        for _ in range(50):  # let the last connection_lost run
            if not server.connections:
                break
            await asyncio.sleep(0.02)
        served.close()
        if server._sweeper is not None:  # set_idle_timeout() started the idle sweep
            server._sweeper.cancel()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        listener.close()
    assert not errors, errors
    return events, transports


class FileThenTail(Protocol):
    """On the first bytes: write, sendfile; on done: write a tail, close."""

    offset, count, close_at_once = 0, None, False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.transports.append(transport)

    def data_received(self, data: bytes) -> None:
        self.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        self.file = open(self.path, "rb")  # noqa: SIM115 - closed in done
        self.transport.write(b"before|")
        self.transport.sendfile(self.file, self.offset, self.count, done=self.done)
        if self.close_at_once:
            self.transport.close()

    def done(self, future) -> None:
        try:
            self.events.append(("done", future.result()))
        except Exception as exc:
            self.events.append(("failed", type(exc).__name__))
        self.file.close()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"|after")
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.events.append(("lost", type(exc).__name__ if exc else None))
        super().connection_lost(exc)


def recv_all(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    out = bytearray()
    while chunk := sock.recv(1 << 20):
        out += chunk
    return bytes(out)


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "payload"
    path.write_bytes(CONTENT)
    return path


@pytest.fixture
def counted_loop_sendfile(monkeypatch):
    """Every loop's sendfile, counted (asyncio's BaseEventLoop serves aio's too)."""
    calls = []
    real = asyncio.BaseEventLoop.sendfile

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        calls.append(count)
        return await real(self, transport, file, offset, count, fallback=fallback)

    monkeypatch.setattr(asyncio.BaseEventLoop, "sendfile", sendfile)
    return calls


def check_path(model: str, transports: list, calls: list) -> None:
    native = transports[0].sendfile_native
    if model == "uvloop":
        assert native is False and not calls  # no loop.sendfile on uvloop: read + write
    else:
        assert native is True and calls, calls


@pytest.mark.parametrize("model", asyncio_models())
def test_before_file_after_in_order_with_offset_and_count(model, payload, counted_loop_sendfile):
    class Ranged(FileThenTail):
        offset, count = 1001, 2_500_000

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"go")
            got = recv_all(sock)
        assert got == b"before|" + CONTENT[1001:2_501_001] + b"|after", len(got)

    events, transports = serve(model, Ranged, client, payload)
    assert events == [("done", 2_500_000), ("lost", None)]
    check_path(model, transports, counted_loop_sendfile)


@pytest.mark.parametrize("model", asyncio_models())
def test_close_right_after_sendfile_sends_the_file_first(model, payload, counted_loop_sendfile):
    class CloseAtOnce(FileThenTail):
        close_at_once = True

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"go")
            assert recv_all(sock) == b"before|" + CONTENT

    events, transports = serve(model, CloseAtOnce, client, payload)
    assert events == [("done", SIZE), ("lost", None)]
    check_path(model, transports, counted_loop_sendfile)


@pytest.mark.parametrize("model", asyncio_models())
def test_a_client_that_goes_away_mid_file(model, payload, counted_loop_sendfile):
    def client(port: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"go")
        recv_exactly(sock, 100_000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    events, _ = serve(model, FileThenTail, client, payload)
    assert len(events) == 2, events
    failed, lost = sorted(events)
    assert failed[0] == "failed", events
    assert lost[0] == "lost", events


class SlowButSteady(FileThenTail):
    """The file to a reader slower than a 1 MiB piece per 0.4 s idle
    timeout, but reading: the peer's acknowledged bytes are its progress."""

    def data_received(self, data: bytes) -> None:
        self.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        self.transport.set_idle_timeout(0.4)
        self.file = open(self.path, "rb")  # noqa: SIM115 - closed in done
        self.transport.sendfile(self.file, done=self.done)


@pytest.mark.parametrize("model", asyncio_models())
def test_a_reader_slower_than_a_piece_per_timeout_is_not_cut(model, payload):
    events, _ = serve(model, SlowButSteady, lambda port: read_slowly(port, CONTENT), payload)
    assert events[0] == ("done", SIZE), events
