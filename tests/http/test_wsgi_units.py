"""--app without sockets: who runs the app, the CLI's checks, wsgi.input's
reads, and a worker-mode request over the fake transport."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fake import FakeTransport

from iomodels import protocols
from iomodels.core.errors import IOModelsError
from iomodels.core.server import ServerConfig, ServerState
from iomodels.protocols.http.protocol import HttpProtocol, HttpSettings
from iomodels.protocols.http.wsgi import WsgiApp, is_blocking_model, load_app, make_wsgi_app
from iomodels.protocols.http.wsgi_streams import InputStream

APPS_DIR = str(Path(__file__).resolve().parent / "apps")


@pytest.fixture
def apps_on_path(monkeypatch):
    monkeypatch.syspath_prepend(APPS_DIR)


def test_the_registry_says_who_runs_the_app(apps_on_path) -> None:
    assert [is_blocking_model(m) for m in ("blocking", "threads", "processes", "threadpool")] == [True] * 4
    assert not any(is_blocking_model(m) for m in ("epoll", "select", "io_uring", "asyncio", "uvloop"))
    assert make_wsgi_app("wsgi_apps:wsgi_hello", "threads").mode == "thread"
    assert make_wsgi_app("wsgi_apps:wsgi_hello", "threads", inline=True).mode == "thread"
    assert make_wsgi_app("wsgi_apps:wsgi_hello", "epoll").mode == "worker"
    assert make_wsgi_app("wsgi_apps:wsgi_hello", "epoll", inline=True).mode == "inline"
    processes = make_wsgi_app("wsgi_apps:wsgi_hello", "processes").base_environ
    assert processes["wsgi.multiprocess"] is True and processes["wsgi.multithread"] is False
    assert make_wsgi_app("wsgi_apps:wsgi_hello", "threads").base_environ["wsgi.multithread"] is True
    assert (
        make_wsgi_app("wsgi_apps:wsgi_hello", "epoll", inline=True).base_environ["wsgi.multithread"] is False
    )


def test_config_reaches_the_settings(apps_on_path) -> None:
    config = ServerConfig(model="io_uring", protocol="http", http_app="wsgi_apps:app", http_app_inline=True)
    settings = protocols.resolve("http", ServerState("io_uring", "http"), config)().settings
    assert settings.wsgi.mode == "inline" and settings.wsgi.app.__name__ == "app"


def test_bad_app_specs_say_what_is_wrong(apps_on_path) -> None:
    for spec, words in [
        ("wsgi_apps", "MODULE:CALLABLE"),
        ("no_such_module:app", "cannot load"),
        ("wsgi_apps:missing", "cannot load"),
        ("wsgi_apps:BODY", "not callable"),
    ]:
        with pytest.raises(IOModelsError, match=words):
            load_app(spec)


def test_cli_wants_protocol_http_with_app() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "iomodels", "serve", "--model", "epoll", "--app", "x:y", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--app and --app-inline need --protocol http" in out.stderr


def test_input_stream_reads_like_a_file() -> None:
    stream = InputStream(None, lambda: None)
    for piece in (b"first li", b"ne\nsec", b"ond\n", b"third"):
        stream.feed(piece)
    stream.eof = True
    assert stream.readline() == b"first line\n"
    assert stream.read(3) == b"sec"
    assert stream.readline(2) == b"on"
    assert list(stream) == [b"d\n", b"third"]
    assert stream.read() == b"" and stream.read(10) == b""


def test_worker_mode_over_the_fake_transport_streams_and_answers_in_order(apps_on_path) -> None:
    """The worker's output reaches the loop through loop_caller: the fake
    transport's call_soon_threadsafe queues callbacks this test runs."""
    import wsgi_apps

    calls: list = []
    finished = threading.Event()

    class LoopTransport(FakeTransport):
        def call_soon_threadsafe(self, callback, arg=None) -> None:
            calls.append((callback, arg))

        def run_in_worker(self, func, *args, done=None) -> None:
            def work() -> None:
                result = func(*args)
                calls.append((lambda _: done(Finished(result)), None))
                finished.set()

            threading.Thread(target=work).start()

    class Finished:
        def __init__(self, value) -> None:
            self.value = value

        def result(self):
            return self.value

    protocol = HttpProtocol(HttpSettings(wsgi=WsgiApp(wsgi_apps.app, "worker")))
    transport = LoopTransport()
    protocol.connection_made(transport)
    protocol.data_received(
        b"GET /stream?count=3&size=512 HTTP/1.1\r\nHost: t\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert transport.paused  # the second request waits for the first
    for _ in range(2):
        assert finished.wait(10)
        finished.clear()
        while calls:  # the loop's turn
            callback, arg = calls.pop(0)
            callback(arg)
    data = transport.take()
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"Hello, World!")
    assert data.index(b"Transfer-Encoding: chunked") < data.index(b"Content-Length: 13")
