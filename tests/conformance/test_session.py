"""The seed's own session, the ready line and the exit status, on every model."""

import socket
import subprocess
import sys

import pytest

from helpers import SRC_DIR, Server, wait_group_gone

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
    """``iomodels serve --model M``, then ``printf 'hello\\nstraße\\n' | iomodels
    client`` prints HELLO, STRASSE: upper is the default protocol."""
    with Server(model, protocol=None) as server:
        assert server.ready_line == f"listening on 127.0.0.1:{server.port} model={model} protocol=upper"
        result = run_client(server.port, "hello\nstraße\n".encode())
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == "HELLO\nSTRASSE\n"
        status, _ = server.stop()
        assert status == 0, server.stderr()
        assert server.stdout_rest == b"", "stdout carried more than the ready line"
        assert wait_group_gone(server.pid) == []


def test_ipv6_ready_line(model):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with Server(model, protocol="echo", host="::1") as server:
        assert server.ready_line == f"listening on [::1]:{server.port} model={model} protocol=echo"
        assert server.exchange("over ipv6 €\n".encode()) == "over ipv6 €\n".encode()
        assert server.stop()[0] == 0
