"""ServerState: the server and the protocol factory share it, and every model
sets ``stopping`` at the first stop signal, before it closes anything (an
HTTP /health route answers 503 from it while the stop drains).

The servers run in this (main) thread, where signal handlers can be
installed.  Two models are left out: ``processes``, whose connections end in
forked children, whose copy of the state the parent never sees; and
``sigio``, whose realtime signals are process-directed and kill a test
process whose other threads (left by earlier tests) do not block them.
Both stop through code the others run: ``processes`` through _blocking's
request_stop, ``sigio`` through the readiness loop's.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from iomodels import models, protocols
from iomodels.core.offload import WorkerPool
from iomodels.core.server import ServerConfig, ServerState, make_listener
from iomodels.protocols.echo import EchoProtocol
from iomodels.serve import run

from helpers import recv_exactly

pytestmark = pytest.mark.timeout(60)

MAIN = threading.main_thread().ident  # the signal goes to the serving thread
IN_THREAD = [name for name in models.names() if name not in ("processes", "sigio")]


def in_thread_params() -> list:
    params = []
    for name in IN_THREAD:
        ok, reason = models.available(name)
        marks = [] if ok else [pytest.mark.skip(reason=f"{name}: {reason}")]
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.mark.parametrize("model", in_thread_params())
def test_stopping_is_set_before_any_connection_closes(model):
    seen: list[tuple[str, bool]] = []  # (callback, state.stopping) as the protocol saw it
    state = ServerState(model, "echo")

    class Watching(EchoProtocol):
        def data_received(self, data: bytes) -> None:
            seen.append(("data", state.stopping))
            super().data_received(data)

        def connection_lost(self, exc: BaseException | None) -> None:
            seen.append(("lost", state.stopping))
            super().connection_lost(exc)

    config = ServerConfig(model=model, protocol="echo", port=0, graceful_timeout_s=2.0)
    listener = make_listener("127.0.0.1", 0, 16)
    ready = threading.Event()
    server = models.get(model)(config, Watching, listener, ready.set, state)
    assert server.state is state
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            assert ready.wait(10)
            with socket.create_connection(listener.getsockname(), timeout=10) as sock:
                sock.sendall(b"ping")
                assert recv_exactly(sock, 4) == b"ping"
                assert not state.stopping
                signal.pthread_kill(MAIN, signal.SIGTERM)
                sock.settimeout(5)
                assert sock.recv(10) == b"", "the stop did not close the connection"
        except BaseException as exc:
            errors.append(exc)
            signal.pthread_kill(MAIN, signal.SIGTERM)

    thread = threading.Thread(target=drive)
    thread.start()
    try:
        server.serve_forever()
    finally:
        thread.join(10)
        server.workers.shutdown()
        listener.close()
    assert not errors, errors
    assert seen[0] == ("data", False)
    assert seen[-1] == ("lost", True), seen
    assert server.state.stopping


def test_a_default_state_names_the_model_and_protocol():
    config = ServerConfig(model="epoll", protocol="upper", port=0)
    listener = make_listener("127.0.0.1", 0, 16)
    try:
        server = models.server_class("epoll")(config, EchoProtocol, listener)
    finally:
        listener.close()
    assert server.state == ServerState("epoll", "upper", stopping=False)


def test_run_shares_one_state_between_the_server_and_the_protocol_factory(monkeypatch):
    given: dict[str, object] = {}
    real_resolve = protocols.resolve

    def resolve(spec: str, state: object = None):
        given["resolve"] = state
        return real_resolve(spec, state)

    class Probe:
        name = "probe"

        def __init__(self, config, factory, listener, announce=None, state=None) -> None:
            given["server"] = state
            self.workers = WorkerPool(1)
            self.stop_started = None

        def serve_forever(self) -> None:
            pass

    monkeypatch.setattr(protocols, "resolve", resolve)
    monkeypatch.setattr(models, "get", lambda name: Probe)
    assert run(ServerConfig(model="epoll", protocol="echo", port=0)) == 0
    assert isinstance(given["server"], ServerState)
    assert given["resolve"] is given["server"]
    assert given["server"] == ServerState("epoll", "echo", stopping=False)
    time.sleep(0)  # nothing ran: run() returned after serve_forever
