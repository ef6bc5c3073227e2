"""``iomodels bench --protocol http`` over sockets: our server, scripted servers, wrk.

Counts are compared with what a server answered; errors by kind with what a
scripted server did wrong.  The one figure compared across generators (wrk's
req/s against ours) has a generous bound: a sanity check, not a speed claim.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
from collections.abc import Callable

import pytest

from iomodels.loadgen.command import main as bench_main
from iomodels.loadgen.runner import LoadConfig, LoadGenerator
from iomodels.webbench import wrk

from helpers import Server

pytestmark = pytest.mark.timeout(90)

HEAD = b"HTTP/1.1 200 OK\r\nServer: scripted\r\nContent-Type: text/plain\r\n"
PLAIN = HEAD + b"Content-Length: 13\r\n\r\nHello, World!"


def _gen(port: int, **kw) -> LoadGenerator:
    kw.setdefault("timeout_s", 5.0)
    return LoadGenerator(LoadConfig(host="127.0.0.1", port=port, protocol="http", **kw))


def _load(port: int, window_s: float = 0.4, **kw) -> tuple[dict, dict, dict]:
    with _gen(port, **kw) as gen:
        setup = gen.setup(10)
        warm = gen.run(0.2, record=False, drain_s=2)
        result = gen.run(window_s, record=True, drain_s=2)
    return setup, warm, result


class Scripted:
    """An HTTP server on a thread of this process that answers from a script.

    ``respond(k, n)`` gives the bytes for the k-th request received overall,
    the n-th on its connection (both counted from 0), and whether to close
    the connection after them; every request is a head without a body (GET)."""

    def __init__(self, respond: Callable[[int, int], tuple[bytes, bool]]) -> None:
        self.respond = respond
        self.answered = 0
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                if key.data is None:
                    try:
                        conn, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    self.accepted += 1
                    conn.setblocking(True)  # small answers: sendall does not wait long
                    sel.register(conn, selectors.EVENT_READ, [bytearray(), 0])
                    continue
                conn, (buf, _) = key.fileobj, key.data
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                buf += data
                closed = not data
                while not closed and (end := buf.find(b"\r\n\r\n")) >= 0:
                    del buf[: end + 4]
                    answer, closed = self.respond(self.answered, key.data[1])
                    self.answered += 1
                    key.data[1] += 1
                    try:
                        conn.sendall(answer)
                    except OSError:
                        closed = True
                if closed:
                    sel.unregister(conn)
                    conn.close()
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()

    def __enter__(self) -> Scripted:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# ---------------------------------------------------------------------------
# our server


@pytest.mark.parametrize(
    "how",
    [
        {},
        {"pipeline": 8},
        {"path": "/json", "pipeline": 3},
        {"method": "POST", "path": "/echo", "msize": 3000, "pipeline": 2},
        {"method": "POST", "path": "/upper", "msize": 100},
        {"method": "HEAD"},
    ],
    ids=lambda how: "-".join(f"{k}={v}" for k, v in how.items()) or "plaintext",
)
def test_our_server_every_response_correct(how: dict) -> None:
    with Server("epoll", protocol="http") as server:
        setup, warm, result = _load(server.port, connections=3, idle=2, workers=2, **how)
    assert setup["errors_total"] == 0 and setup["idle_alive"] == 2
    assert warm["errors_total"] == 0
    assert result["errors_total"] == 0, result["error_detail"]
    assert result["requests"] > 0
    assert result["requests"] % how.get("pipeline", 1) == 0  # whole batches, drained
    assert result["latency"]["count"] == result["requests"]  # one sample per response
    assert result["mib_per_s"] > 0


def test_a_wrong_path_is_a_status_error() -> None:
    with Server("epoll", protocol="http") as server:
        _, _, result = _load(server.port, connections=2, path="/missing")
    assert result["requests"] == 0
    assert result["errors"]["status"] > 0 == result["errors"]["malformed"]
    assert set(result["error_detail"]) == {"status: HTTP 404"}


def test_open_loop_rate_counts_requests_not_batches() -> None:
    with (
        Server("epoll", protocol="http") as server,
        _gen(server.port, connections=2, rate=400, pipeline=4) as gen,
    ):
        gen.setup(10)
        result = gen.run(1.0, record=True, drain_s=2)
    assert result["errors_total"] == 0, result["error_detail"]
    assert 0.7 * 400 <= result["requests"] <= 1.1 * 400


def test_ipv6_host_header() -> None:
    try:  # as tests/conformance/test_session.py: a machine without ::1 cannot run it
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with (
        Server("epoll", protocol="http", host="::1") as server,
        LoadGenerator(LoadConfig(host="::1", port=server.port, protocol="http", connections=2)) as gen,
    ):
        gen.setup(10)
        result = gen.run(0.3, record=True, drain_s=2)
    assert result["requests"] > 0 and result["errors_total"] == 0, result["error_detail"]


# ---------------------------------------------------------------------------
# scripted servers: exact counts, each error by its kind


def test_counts_match_what_the_server_answered() -> None:
    with Scripted(lambda k, n: (PLAIN, False)) as server:
        setup, warm, result = _load(server.port, connections=4, idle=3, workers=2, pipeline=4)
    assert result["errors_total"] == 0 and result["requests"] > 0
    # each idle proof of life is one batch; warm-up and window drained to the last response
    assert server.answered == 3 * 4 + warm["requests"] + result["requests"]
    assert server.accepted == 7 and setup["connects"] == 7


def test_a_chunked_and_a_cut_response_are_read() -> None:
    """The server's writes cut the response anywhere: the parser keeps its place."""
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n8\r\n, World!\r\n0\r\n\r\n"

    def respond(k: int, n: int) -> tuple[bytes, bool]:
        return (chunked if k % 2 else PLAIN), False

    with Scripted(respond) as server:
        _, _, result = _load(server.port, connections=2, pipeline=3)
    assert result["errors_total"] == 0 and result["requests"] > 0


def test_bad_responses_are_counted_by_kind_and_the_connection_reopened() -> None:
    bad = {
        0: PLAIN.replace(b"200 OK", b"500 Internal Server Error"),
        1: PLAIN.replace(b"HTTP/1.1 200", b"HTTP/1.1 2x0"),
        2: PLAIN.replace(b"World", b"world"),
    }

    def respond(k: int, n: int) -> tuple[bytes, bool]:
        return (bad[(k // 10) % 3] if k % 10 == 9 else PLAIN), False

    with Scripted(respond) as server:
        _, _, result = _load(server.port, window_s=1.0, connections=3)
    errors = result["errors"]
    assert result["requests"] > 0
    assert errors["status"] > 0 and errors["malformed"] > 0 and errors["mismatch"] > 0
    assert result["errors_total"] == errors["status"] + errors["malformed"] + errors["mismatch"]
    # every bad response cost its connection, re-opened after the back-off (the
    # last ones' back-off may outlast the window)
    assert result["connects"] >= result["errors_total"] // 2 > 0


def test_connection_close_is_not_an_error() -> None:
    closing = PLAIN.replace(b"Server", b"Connection: close\r\nServer")
    with Scripted(lambda k, n: (closing, True)) as server:
        _, _, result = _load(server.port, connections=2)
    assert result["errors_total"] == 0, result["error_detail"]
    assert result["requests"] > 0
    assert result["connects"] >= result["requests"] - 2  # one connection per response


def test_a_short_body_at_close_is_a_read_error() -> None:
    with Scripted(lambda k, n: (PLAIN[:-3], True)) as server:
        _, _, result = _load(server.port, connections=2)
    assert result["requests"] == 0
    assert result["errors"]["read"] > 0
    assert all("middle of a response" in key for key in result["error_detail"]), result["error_detail"]


def test_pipelined_batch_cut_short_counts_what_came() -> None:
    """Connection: close in the middle of a batch: the responses before it count,
    the rest of the batch is a read error."""
    closing = PLAIN.replace(b"Server", b"Connection: close\r\nServer")

    def respond(k: int, n: int) -> tuple[bytes, bool]:
        return (closing, True) if n == 1 else (PLAIN, False)

    with Scripted(respond) as server:
        _, _, result = _load(server.port, connections=1, pipeline=4)
    assert result["requests"] > 0 and result["errors"]["read"] > 0
    assert set(result["error_detail"]) == {"read: Connection: close with 2 pipelined requests unanswered"}


# ---------------------------------------------------------------------------
# the command line, and wrk on the same server


def test_bench_command_http(capsys) -> None:
    with Server("epoll", protocol="http") as server:
        argv = ["--protocol", "http", "--port", str(server.port), "-c", "2", "-d", "300ms", "--warmup", "0"]
        assert bench_main([*argv, "--pipeline", "4"]) == 0
        text = capsys.readouterr().out
        assert "HTTP/1.1 GET /plaintext, pipeline 4" in text and "malformed 0" in text
        assert bench_main([*argv, "--method", "POST", "--msize", "64", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["config"]["path"] == "/echo" and doc["errors_total"] == 0 and doc["requests"] > 0


@pytest.mark.parametrize(
    "argv", [["--pipeline", "2"], ["--path", "/x"], ["--protocol", "http", "--path", "no-slash"]]
)
def test_bench_http_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main(argv)
    assert exc.value.code == 2


@pytest.mark.skipif(wrk.wrk_path() is None, reason=wrk.INSTALL_HINT)
def test_wrk_and_we_agree_within_a_generous_factor() -> None:
    """Both count requests with no error on the same server; our req/s within
    0.3x-3x of wrk's (a sanity bound on a shared machine; bench/crosscheck.py
    --against wrk measures it properly)."""
    with Server("epoll", protocol="http") as server:
        theirs = wrk.run(f"http://127.0.0.1:{server.port}/plaintext", connections=10, duration_s=1)
        with _gen(server.port, connections=10) as gen:
            gen.setup(10)
            ours = gen.run(1.0, record=True, drain_s=2)
    assert theirs.requests > 0 and theirs.errors == 0
    assert ours["requests"] > 0 and ours["errors_total"] == 0, ours["error_detail"]
    assert 0.3 <= ours["req_per_s"] / theirs.rps <= 3.0, (ours["req_per_s"], theirs.rps)
