"""The command line: help, exit statuses, one-line errors."""

import socket
import subprocess
import sys

import pytest

from iomodels import models

from helpers import SRC_DIR

pytestmark = pytest.mark.timeout(60)


def iomodels(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iomodels", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        env={"PYTHONPATH": str(SRC_DIR)},
    )


def test_serve_help_documents_the_limits():
    result = iomodels("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.decode().split())
    assert "accepted and closed at once" in text
    for option in (
        "--model",
        "--protocol",
        "--threads",
        "--backlog",
        "--max-connections",
        "--idle-timeout",
        "--graceful-timeout",
    ):
        assert option in text


@pytest.mark.parametrize(
    "args",
    [
        ["serve"],
        ["serve", "--model", "nosuch"],
        ["serve", "--model", "epoll", "--port", "70000"],
        ["serve", "--model", "epoll", "--protocol", "nosuch"],
        ["serve", "--model", "epoll", "--threads", "0"],
        ["serve", "--model", "epoll", "--idle-timeout", "-1"],
        ["serve", "--model", "epoll", "--bogus"],
        ["nosuchcommand"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_usage_is_one_line_and_status_2(args):
    result = iomodels(*args)
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "error" in lines[0]
    if args[0] == "serve":  # the subcommand says it, whichever error it is
        assert lines[0].startswith("iomodels serve: error: "), lines


def test_unavailable_model_is_status_2_with_reason():
    unavailable = [name for name in models.names() if not models.available(name)[0]]
    if not unavailable:
        pytest.skip("every model is available on this platform")
    result = iomodels("serve", "--model", unavailable[0], "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and models.available(unavailable[0])[1] in lines[0]


def test_models_lists_every_model():
    result = iomodels("models")
    assert result.returncode == 0
    out = result.stdout.decode()
    for name in models.names():
        ok, reason = models.available(name)
        row = next(line for line in out.splitlines() if line.split()[0] == name)
        assert ("yes" if ok else "no") == row.split()[1]
        if not ok:
            assert reason in row


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_refused_is_one_line_and_status_1():
    result = iomodels("client", "--port", str(free_port()), stdin=b"hello\n")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot connect" in lines[0]


def test_port_in_use_is_one_line_and_status_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = iomodels("serve", "--model", "epoll", "--port", str(port))
    assert result.returncode == 1
    assert result.stdout == b""
    lines = [line for line in result.stderr.decode().strip().splitlines() if "error" in line]
    assert len(lines) == 1 and "cannot listen" in lines[0]
