"""serve --workers: a supervisor keeps N workers of any model running, replaces
the dead, stops them all within the budget, and takes orders by signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from workers_support import wait_for, wait_workers, worker_pids

from helpers import Server, expect_eof, model_params, roundtrip, wait_group_gone

GRACEFUL_S = 2.0


@pytest.mark.parametrize("model", model_params())
def test_two_workers_serve_survive_a_kill_and_stop_with_busy_clients(model: str) -> None:
    server = Server(model, "--workers", "2", "--graceful-timeout", str(GRACEFUL_S))
    try:
        first = wait_workers(server, 2)
        for _ in range(4):
            server.canary()

        # SIGKILL one worker: the supervisor replaces it, service goes on.
        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        replaced = wait_workers(server, 2, exclude=[victim])
        assert first[1] in replaced, f"the other worker should live on: {first} -> {replaced}"
        server.canary(retry_for=2.0)
        assert f"worker {victim} killed by SIGKILL" in server.stderr()

        # SIGTERM with busy clients: exit 0 within the budget, nothing left.
        busy = []
        for i in range(1 if model == "blocking" else 6):  # blocking: one client per worker at a time
            sock = server.connect()
            roundtrip(sock, f"busy {i}\n".encode())
            busy.append(sock)
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        status = server.wait(GRACEFUL_S + 3)
        took = time.monotonic() - start
        assert status == 0, f"exit status {status}; log:\n{server.stderr()[-3000:]}"
        assert took < GRACEFUL_S + 1.0, f"took {took:.2f} s for a {GRACEFUL_S} s budget"
        assert wait_group_gone(server.pgid, 1.0) == [], "processes left after the supervisor exited"
        for sock in busy:
            assert expect_eof(sock, 2.0), "a busy client was not closed"
            sock.close()
    finally:
        server.stop()


def test_ttin_ttou_change_the_count_and_the_oldest_retires() -> None:
    with Server("epoll", "--workers", "2") as server:
        first = wait_workers(server, 2)
        server.signal(signal.SIGTTIN)
        three = wait_workers(server, 3)
        assert set(first) < set(three)
        server.signal(signal.SIGTTOU)
        two = wait_workers(server, 2)
        assert set(two) < set(three)
        server.canary()
        # Never fewer than one.
        server.signal(signal.SIGTTOU)
        wait_workers(server, 1)
        server.signal(signal.SIGTTOU)
        wait_for("the refusal logged", lambda: "SIGTTOU ignored" in server.stderr(), 5, server)
        assert len(worker_pids(server)) == 1
        server.canary()


def test_reload_imports_the_protocol_afresh(tmp_path) -> None:
    module = tmp_path / "reloaded_proto.py"
    source = (
        "from iomodels.core.protocol import Protocol\n"
        "class Tagged(Protocol):\n"
        "    def data_received(self, data):\n"
        "        self.transport.write(b'{tag}:' + data)\n"
    )
    module.write_text(source.format(tag="v1"))
    with _server_importing(tmp_path, "epoll", "--workers", "2", protocol="reloaded_proto:Tagged") as server:
        first = wait_workers(server, 2)
        assert server.exchange(b"x") == b"v1:x"
        module.write_text(source.format(tag="v2"))
        server.signal(signal.SIGHUP)
        wait_workers(server, 2, exclude=first, timeout=15)
        assert server.exchange(b"x") == b"v2:x"
        # A reload that cannot import keeps the generation that serves.
        serving = worker_pids(server)
        module.write_text("raise ImportError('broken on purpose')\n")
        server.signal(signal.SIGHUP)
        wait_for("the failed reload logged", lambda: "reload failed" in server.stderr(), 10, server)
        assert worker_pids(server) == serving or wait_workers(server, 2) == serving
        assert server.exchange(b"x") == b"v2:x"


def _server_importing(tmp_path, model: str, *args: str, protocol: str) -> Server:
    """A Server whose PYTHONPATH starts with ``tmp_path`` (a protocol module written there)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tmp_path) + (os.pathsep + old if old else "")
    try:
        return Server(model, *args, protocol=protocol)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def test_a_worker_stuck_at_the_deadline_is_killed_and_the_exit_is_still_0(tmp_path) -> None:
    (tmp_path / "stuck_proto.py").write_text(
        "import time\n"
        "from iomodels.core.protocol import Protocol\n"
        "class Stuck(Protocol):\n"
        "    def data_received(self, data):\n"
        "        time.sleep(60)  # holds the worker's only thread: its stop cannot run\n"
    )
    server = _server_importing(
        tmp_path, "epoll", "--workers", "1", "--graceful-timeout", "1", protocol="stuck_proto:Stuck"
    )
    try:
        with server.connect() as sock:
            sock.sendall(b"x")
            time.sleep(0.2)  # the worker is asleep in data_received
            start = time.monotonic()
            server.signal(signal.SIGTERM)
            status = server.wait(5)
            took = time.monotonic() - start
        assert status == 0
        assert 0.9 <= took < 1.6, f"exited {took:.2f} s after SIGTERM with a 1 s budget"
        assert "still running at the stop deadline: SIGKILL" in server.stderr()
        assert wait_group_gone(server.pgid, 1.0) == []
    finally:
        server.stop()


def test_a_worker_that_keeps_dying_is_replaced_ever_later(tmp_path) -> None:
    (tmp_path / "dying_proto.py").write_text(
        "import os\n"
        "from iomodels.core.protocol import Protocol\n"
        "class Dying(Protocol):\n"
        "    def connection_made(self, transport):\n"
        "        os._exit(7)\n"
    )
    with _server_importing(tmp_path, "epoll", "--workers", "1", protocol="dying_proto:Dying") as server:
        for expected in ("0.1", "0.2", "0.4"):
            victim = wait_workers(server, 1)[0]
            # A worker just forked may not listen yet, and with one worker
            # nothing else does: connect until it does.
            sock = wait_for("the new worker listening", lambda: _connect_or_none(server), 5, server)
            with sock:
                sock.settimeout(5)
                assert sock.recv(10) == b""  # the worker died under it
            wait_workers(server, 1, exclude=[victim])
            assert f"worker {victim} exited with status 7 after" in server.stderr()
            assert f"starting another in {expected} s" in server.stderr()


def _connect_or_none(server: Server):
    try:
        return server.connect()
    except ConnectionRefusedError:
        return None


def test_ctrl_c_at_a_terminal_reaches_the_supervisor_alone() -> None:
    server = Server("epoll", "--workers", "2", protocol="http")
    try:
        pids = wait_workers(server, 2)
        status, took = server.stop(signal.SIGINT, group=True)
        assert status == 0 and took < 3
        log = server.stderr()
        assert "supervisor: SIGINT: stopping 2 worker(s)" in log
        for pid in pids:  # each retired in order: the supervisor's SIGTERM, not the terminal's SIGINT
            assert f"iomodels[{pid}] INFO signal SIGTERM: stopping" in log
            assert f"iomodels[{pid}] INFO signal SIGINT" not in log
    finally:
        server.stop()


def test_a_second_stop_signal_ends_everything_at_once() -> None:
    server = Server(
        "epoll", "--workers", "2", "--drain-delay", "5", "--graceful-timeout", "5", protocol="http"
    )
    try:
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        time.sleep(0.2)
        server.signal(signal.SIGTERM)
        status = server.wait(5)
        assert status == 0 and time.monotonic() - start < 1.5
        assert wait_group_gone(server.pgid, 1.0) == []
    finally:
        server.stop()


def test_a_protocol_that_does_not_load_is_a_start_error() -> None:
    argv = [sys.executable, "-m", "iomodels", "serve", "--model", "epoll", "--port", "0"]
    done = subprocess.run(
        [*argv, "--workers", "2", "--protocol", "no_such_module:Nothing"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot load protocol" in done.stderr and "giving up" in done.stderr
    assert done.stdout == "", "no ready line for a server that never accepted"
    done = subprocess.run(
        [*argv, "--drain-delay", "1"], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 2 and "need --workers" in done.stderr


def test_drain_delay_says_503_and_serves_on_then_stops() -> None:
    import http.client

    def get(server: Server, path: str) -> int:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()

    server = Server(
        "epoll", "--workers", "2", "--drain-delay", "1.0", "--graceful-timeout", "2", protocol="http"
    )
    try:
        assert get(server, "/health") == 200
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        wait_for("/health 503", lambda: get(server, "/health") == 503, 0.5, server)
        assert get(server, "/plaintext") == 200, "still serving during the drain delay"
        assert time.monotonic() - start < 1.0
        status = server.wait(5)
        took = time.monotonic() - start
        assert status == 0
        assert 1.0 <= took < 1.0 + 2.0 + 0.5, f"stopped {took:.2f} s after SIGTERM (delay 1 s, budget 2 s)"
    finally:
        server.stop()
