"""Acceptance: the command line, beyond tests/test_cli.py (usage errors, help,
the models table) and the conformance suite (the session on every model):
the table's facts about this machine, the numeric host of the ready line,
the client on a long piped stream, and the defaults of the seed's session."""

import importlib.util
import socket
import subprocess
import sys

import pytest

from helpers import SRC_DIR, Server, model_params, roundtrip

pytestmark = pytest.mark.timeout(60)


def iomodels(*args: str, stdin: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iomodels", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={"PYTHONPATH": str(SRC_DIR)},
    )


def availability() -> dict[str, str]:
    """Model -> its "available" cell in ``iomodels models``."""
    result = iomodels("models")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.decode().splitlines()[1:] if line.strip()]
    return {row[0]: row[1] for row in rows}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="facts about Linux")
def test_models_table_tells_the_truth_here():
    """kqueue cannot run on Linux; select, poll, epoll and the blocking models
    and asyncio are the standard library there; uvloop where it is installed."""
    table = availability()
    assert table["kqueue"] == "no"
    for name in (
        "blocking",
        "threads",
        "processes",
        "threadpool",
        "nonblocking",
        "select",
        "poll",
        "epoll",
        "asyncio",
    ):
        assert table[name] == "yes", f"{name} should run here: {table}"
    installed = importlib.util.find_spec("uvloop") is not None
    assert table["uvloop"] == ("yes" if installed else "no"), table


@pytest.mark.parametrize("model", model_params(only={"threads", "asyncio"}))
def test_ready_line_host_is_numeric_for_a_name(model):
    """HOST in the ready line is the numeric address bound, not the name asked for."""
    with Server(model, protocol="upper", host="localhost") as server:
        assert server.host in ("127.0.0.1", "::1"), server.ready_line
        with server.connect() as sock:
            roundtrip(sock, b"abc", b"ABC")


@pytest.mark.parametrize("model", model_params(only={"threads", "epoll"}))
def test_client_piped_many_lines(model):
    """With piped stdin the client sends everything, half-closes, prints every reply and exits 0."""
    text = "".join(f"line {i} grüße é ß 日本\n" for i in range(2000))
    with Server(model, protocol="upper") as server:
        result = iomodels("client", "--port", str(server.port), stdin=text.encode())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.decode() == text.upper()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_defaults_host_port_and_client_session():
    """``[--host 127.0.0.1] [--port 8080]``, upper by default, and the client's
    defaults: the seed's session verbatim."""
    if not port_free(8080):
        pytest.skip("port 8080 is in use on this machine (environment, not the implementation)")
    with Server("threads", protocol=None, host=None, port=None) as server:
        assert server.ready_line == "listening on 127.0.0.1:8080 model=threads protocol=upper"
        result = iomodels("client", stdin="hello\nstraße\n".encode())
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == "HELLO\nSTRASSE\n"
