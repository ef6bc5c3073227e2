"""The seed's own session, the ready line and the exit status, on every model."""

import socket
import subprocess
import sys

import pytest

from helpers import READY_RE, SRC_DIR, Server, wait_group_gone

pytestmark = pytest.mark.timeout(60)


def run_client(port: int, data: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iomodels", "client", "--port", str(port)],
        input=data,
        capture_output=True,
        timeout=20,
        env={"PYTHONPATH": str(SRC_DIR)},
    )


def test_text_session(model):
    """printf 'hello\\nstraße\\n' | iomodels client  ->  HELLO, STRASSE."""
    with Server(model, protocol="upper") as server:
        assert READY_RE.match(server.ready_line)
        assert f"model={model} protocol=upper" in server.ready_line
        result = run_client(server.port, "hello\nstraße\n".encode())
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == "HELLO\nSTRASSE\n"
        status, _ = server.stop()
        assert status == 0, server.stderr()
        assert wait_group_gone(server.pid) == []


def test_ipv6_ready_line(model):
    try:
        socket.socket(socket.AF_INET6).close()
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with Server(model, protocol="echo", host="::1") as server:
        assert server.ready_line.startswith("listening on [::1]:")
        assert server.exchange(b"over ipv6") == b"over ipv6"
        assert server.stop()[0] == 0
