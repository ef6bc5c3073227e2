"""transport.run_in_worker on the asyncio-shaped models (asyncio, uvloop,
aio), in this process: the job runs on a thread of the server's WorkerPool,
and ``done`` runs once, on the loop's own thread (the contract in
core/protocol.py; models/asyncio.py hands the outcome back with
call_soon_threadsafe).  A ``done`` that raises closes only its connection,
and a connection that closed before the job ended gets no ``done``.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from iomodels import models
from iomodels.core.protocol import Protocol
from iomodels.core.server import ServerConfig, make_listener

from helpers import recv_exactly

pytestmark = pytest.mark.timeout(60)


def asyncio_models() -> list:
    params = []
    for name in ("asyncio", "uvloop", "aio"):
        ok, reason = models.available(name)
        marks = [] if ok else [pytest.mark.skip(reason=f"{name}: {reason}")]
        params.append(pytest.param(name, id=name, marks=marks))
    return params


class Offloads(Protocol):
    """``thread``: a job returns its thread's id, done records both ids and
    replies ``ok``; ``raise``: done raises; ``slow``: a 0.3 s job whose done
    records that it ran."""

    def data_received(self, data: bytes) -> None:
        if data == b"thread":
            self.transport.run_in_worker(threading.get_ident, done=self.answer)
        elif data == b"raise":
            self.transport.run_in_worker(int, done=self.explode)
        elif data == b"slow":
            self.transport.run_in_worker(time.sleep, 0.3, done=lambda _: self.events.append("slow done"))

    def answer(self, outcome) -> None:
        self.events.append(("thread", outcome.result(), threading.get_ident()))
        self.transport.write(b"ok")

    def explode(self, outcome) -> None:
        raise RuntimeError("done raised on purpose")


def serve(model: str, client) -> list:
    """Serve Offloads on ``model``'s loop (the model's own server, in this
    thread) until ``client(port)``, run on a thread, returns; what the
    protocols recorded."""
    cls = models.server_class(model)
    listener = make_listener("127.0.0.1", 0, 16)
    port = listener.getsockname()[1]
    events: list = []

    def factory():
        protocol = Offloads()
        protocol.events = events
        return protocol

    server = cls(ServerConfig(model=model, protocol="echo", port=0), factory, listener, lambda: None)
    errors: list = []

    def run_client() -> None:
        try:
            client(port)
        except BaseException as exc:
            errors.append(exc)
        finally:
            server._loop.call_soon_threadsafe(server._stop.set)

    def announce() -> None:  # listening, on the loop: the client may start
        threading.Thread(target=run_client, daemon=True).start()

    server.announce = announce
    try:
        server.serve_forever()  # the graceful stop once the client is done
    finally:
        listener.close()
        assert server.workers.shutdown(time.monotonic() + 5) == 0
    assert not errors, errors
    return events


@pytest.mark.parametrize("model", asyncio_models())
def test_done_runs_once_on_the_loop_thread(model):
    loop_thread = threading.get_ident()  # serve_forever runs here

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for _ in range(3):
                sock.sendall(b"thread")
                assert recv_exactly(sock, 2, timeout=5) == b"ok"

    events = serve(model, client)
    assert len(events) == 3
    for _, worker, done_on in events:
        assert done_on == loop_thread
        assert worker != loop_thread


@pytest.mark.parametrize("model", asyncio_models())
def test_a_raising_done_closes_its_connection_only(model, caplog):
    def client(port: int) -> None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as bad,
            socket.create_connection(("127.0.0.1", port), timeout=5) as good,
        ):
            bad.sendall(b"raise")
            assert bad.recv(1) == b""  # closed by the server
            good.sendall(b"thread")
            assert recv_exactly(good, 2, timeout=5) == b"ok"

    with caplog.at_level("ERROR", logger="iomodels"):
        events = serve(model, client)
    assert len(events) == 1
    assert "run_in_worker done raised" in caplog.text


@pytest.mark.parametrize("model", asyncio_models())
def test_no_done_after_the_connection_closed(model):
    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"slow")
            time.sleep(0.05)  # the job is on the pool
        time.sleep(0.5)  # it ends on a closed connection

    assert serve(model, client) == []
