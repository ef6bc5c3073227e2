"""Acceptance: the listener's defaults -- backlog 2048 (or the kernel's cap),
``--backlog``, and the open-file soft limit raised to the hard limit at start."""

import shutil
import subprocess

import pytest

from helpers import Server, model_params

pytestmark = pytest.mark.timeout(90)


def soft_nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError(f"no 'Max open files' in /proc/{pid}/limits")


def listen_backlog(port: int) -> int:
    if shutil.which("ss") is None:
        pytest.skip("the `ss` tool (iproute2) is not installed here: cannot read a listen backlog")
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert rows, f"no listening socket on port {port} according to ss"
    return int(rows[0][2])  # for a LISTEN socket, Send-Q is the backlog


def test_defaults_raise_nofile_and_backlog_2048(model):
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    with Server(model, protocol="echo", nofile=(256, 8192)) as server:
        assert soft_nofile(server.pid) == 8192, "open-file soft limit not raised to the hard limit"
        assert listen_backlog(server.port) == min(2048, somaxconn)


@pytest.mark.parametrize("model", model_params(only={"threads", "epoll", "asyncio"}))
def test_backlog_flag(model):
    with Server(model, "--backlog", "64") as server:
        assert listen_backlog(server.port) == 64
