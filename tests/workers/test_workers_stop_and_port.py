"""serve --workers: a second stop signal leaves nothing of the server behind,
the processes model's per-connection children included; and a second server
on the port of a running one is refused, as without --workers."""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
from workers_support import wait_for, wait_workers

from helpers import Flood, Server, group_pids, model_params, recv_until_eof, wait_group_gone

# Long enough that a child still stopping gracefully would still be there
# when the test looks: the stop now must not wait for any of it.
GRACEFUL_S = 30.0
CHUNK = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"  # one 64 KiB chunk of a chunked body


def _blocked_upload(server: Server) -> Flood:
    """A client uploading to /echo without reading the echo: its connection
    stays busy (and, with processes, its child alive) through a graceful stop."""
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    flood = Flood(sock, CHUNK).start()
    assert flood.wait_stalled(quiet=0.5, timeout=15), f"the upload ended: {flood.error!r}"
    return flood


@pytest.mark.parametrize("model", model_params(["processes", "threads"]))
def test_second_stop_signal_leaves_no_process(model: str) -> None:
    server = Server(model, "--workers", "2", "--graceful-timeout", str(GRACEFUL_S), protocol="http")
    flood = None
    try:
        wait_workers(server, 2)
        flood = _blocked_upload(server)
        if model == "processes":  # the upload's child, below a worker
            wait_for("a per-connection child", lambda: len(group_pids(server.pgid)) >= 4, 10, server)
        server.signal(signal.SIGTERM)
        time.sleep(0.5)  # the workers are retiring: notice sent, the child is told too
        server.signal(signal.SIGTERM)
        status = server.wait(10)
        assert status == 0, f"exit status {status}; log:\n{server.stderr()[-3000:]}"
        # Nothing may be left stopping on its own clock (30 s here): a few
        # hundred ms covers the kernel's reaping on a loaded machine.
        left = wait_group_gone(server.pgid, 2.0)
        assert left == [], f"processes {left} still running after the supervisor exited"
        assert "again: killing every worker and their children" in server.stderr()
        assert flood.wait_ended(5), "the uploading client was not disconnected"
    finally:
        if flood is not None:
            flood.stop()
        server.stop()


def _index_model(port: int) -> str:
    """The model named by the index page of whichever server answers on ``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body[:200])
        return body.split("iomodels: model ", 1)[1].split("<", 1)[0]
    finally:
        conn.close()


FIRST = {"workers": ("epoll", ("--workers", "2")), "plain": ("epoll", ())}
SECOND = {"workers": ("threads", ("--workers", "2")), "plain": ("threads", ())}


@pytest.mark.parametrize(
    ("first", "second"),
    [("workers", "workers"), ("workers", "plain"), ("plain", "workers")],
    ids=lambda kind: kind,
)
def test_second_server_on_the_port_is_refused(first: str, second: str) -> None:
    model, args = FIRST[first]
    with Server(model, *args, protocol="http") as server:
        if args:
            wait_workers(server, 2)
        other_model, other_args = SECOND[second]
        command = [sys.executable, "-m", "iomodels", "serve", "--model", other_model, "--protocol", "http"]
        command += ["--host", "127.0.0.1", "--port", str(server.port), *other_args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert done.returncode == 1, f"status {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        assert "listening" not in done.stdout
        assert "Address already in use" in done.stderr, done.stderr
        # Every request reaches the first server (each on a new connection, so
        # SO_REUSEPORT would spread them): none is served by the second.
        answered_by = [_index_model(server.port) for _ in range(40)]
        assert answered_by == [model] * 40, answered_by
        assert server.alive()


def test_second_server_is_refused_while_the_first_workers_start(tmp_path) -> None:
    """Before its workers listen (fork, imports): the first worker's socket,
    made by the supervisor at once, already holds the port."""
    gate = tmp_path / "go"
    (tmp_path / "gated_proto.py").write_text(
        "import pathlib, time\n"
        f"while not pathlib.Path({str(gate)!r}).exists():  # the workers import this: they wait\n"
        "    time.sleep(0.05)\n"
        "from iomodels.protocols.upper import UpperProtocol\n"
    )
    with socket.socket() as probe:  # a free port, for both servers
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "first.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "iomodels", "serve", "--model", "epoll", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "debug"]
    with open(log, "w") as log_file:
        first = subprocess.Popen(
            [*command, "--protocol", "gated_proto:UpperProtocol"],
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for("the supervisor started", lambda: "supervisor: model=" in log.read_text(), 20)
        for args in (("--workers", "2"), ()):
            second = [sys.executable, "-m", "iomodels", "serve", "--model", "threads", "--protocol", "upper"]
            second += ["--host", "127.0.0.1", "--port", str(port), *args]
            done = subprocess.run(second, capture_output=True, text=True, timeout=30)
            assert done.returncode == 1, f"{args}: status {done.returncode}\n{done.stdout}\n{done.stderr}"
            assert "Address already in use" in done.stderr, done.stderr
        assert first.poll() is None and "accepting" not in log.read_text(), (
            "the first started too soon to test"
        )
        gate.touch()
        ready, _, _ = select.select([first.stdout], [], [], 20)
        assert ready and b"listening on" in first.stdout.readline(), log.read_text()[-3000:]
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"hello\n")
                sock.shutdown(socket.SHUT_WR)
                assert recv_until_eof(sock)[0] == b"HELLO\n"
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        first.stdout.close()
