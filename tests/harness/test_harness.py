"""The server harness: start, ready line, stop, group kill, CPU accounting, start errors."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iomodels.core.server import make_listener, ready_line
from iomodels.harness import (
    EXIT_USAGE,
    ArgParser,
    ServerProcess,
    ServerStartError,
    live_descendants,
    machine,
    parse_ready_line,
    session_cpu_s,
    session_group,
)

FAKE = str(Path(__file__).with_name("fake_server.py"))


def fake(mode: str, **kwargs) -> ServerProcess:
    return ServerProcess(command=[sys.executable, FAKE, mode], **kwargs)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def child_pid(server: ServerProcess, deadline_s: float = 10.0) -> int:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        m = re.search(r"child (\d+)", server.log_text())
        if m:
            return int(m.group(1))
        time.sleep(0.02)
    raise AssertionError(f"the fake server never named its child: {server.log_text()!r}")


# ----------------------------------------------------------------------
# the ready line


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_parse_reads_what_ready_line_writes(host):
    try:
        listener = make_listener(host, 0, 8)
    except OSError as exc:
        pytest.skip(f"no {host} here: {exc}")
    with listener:
        ready = parse_ready_line(ready_line(listener, "epoll", "pkg.mod:factory") + "\n")
        assert ready.host == host  # unbracketed: what connect() takes
        assert ready.port == listener.getsockname()[1]
        assert (ready.model, ready.protocol) == ("epoll", "pkg.mod:factory")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "listening on 127.0.0.1:8080",  # no model, no protocol
        "listening on 127.0.0.1:http model=epoll protocol=echo",
        "listening on 127.0.0.1:0 model=epoll protocol=echo",  # port 0 is never bound
        "listening on 127.0.0.1:70000 model=epoll protocol=echo",
        "listening on ::1:8080 model=epoll protocol=echo",  # IPv6 must be bracketed
        "listening on 127.0.0.1:8080 model=epoll protocol=echo trailing",
        "ready on 127.0.0.1:8080 model=epoll protocol=echo",
    ],
)
def test_parse_refuses_malformed_lines(line):
    with pytest.raises(ValueError, match="not a ready line"):
        parse_ready_line(line)


# ----------------------------------------------------------------------
# a real server: start, serve, stop


def test_start_serves_and_stops_cleanly(tmp_path):
    log = tmp_path / "server.log"
    with ServerProcess("epoll", args=["--log-level", "info"], log_path=log) as server:
        assert server.ready is not None and server.ready.model == "epoll"
        assert server.address == ("127.0.0.1", server.port)
        assert server.pid == server.pgid == os.getpgid(server.pid) == os.getsid(server.pid)
        assert server.group_pids() == [server.pid]
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"  # protocol=echo by default
        pid = server.pid
        assert server.stop() == 0  # SIGTERM: a graceful exit
        assert server.stop() == 0  # idempotent
    assert not pid_alive(pid)
    assert "stopped" in log.read_text()  # --log-level info came after the default warning
    assert "stopped" in server.log_text()


def test_server_is_pinned_to_the_cpu_given():
    cpu = max(os.sched_getaffinity(0))
    mine = os.sched_getaffinity(0)
    with ServerProcess("threads", cpu=cpu) as server:
        assert os.sched_getaffinity(server.pid) == {cpu}
    assert os.sched_getaffinity(0) == mine  # the forking thread got its mask back


def test_signal_and_wait():
    with ServerProcess("select") as server:
        assert server.wait(0.1) is None  # still running
        server.signal(signal.SIGINT)
        assert server.wait(10) == 0
        assert not server.alive()


# ----------------------------------------------------------------------
# stopping what does not want to stop


def test_stop_kills_a_child_that_ignores_sigterm():
    server = fake("forks").start()
    child = child_pid(server)
    assert set(server.group_pids()) == {server.pid, child}
    assert server.stop(timeout_s=5) == 0  # the server itself exits on SIGTERM
    assert not pid_alive(child)


def test_stop_kills_a_stubborn_server_and_a_child_outside_its_group():
    server = fake("stubborn").start()
    child = child_pid(server)
    assert os.getpgid(child) != server.pgid and os.getsid(child) == server.pid
    t0 = time.monotonic()
    status = server.stop(timeout_s=0.5)
    assert status == -signal.SIGKILL
    assert time.monotonic() - t0 < 5
    assert not pid_alive(server.pid) and not pid_alive(child)
    assert server.group_pids() == []


# ----------------------------------------------------------------------
# CPU accounting


def test_cpu_seconds_counts_a_reaped_child():
    with fake("burn") as server:
        end = time.monotonic() + 30
        while "burnt" not in server.log_text():
            assert time.monotonic() < end, "the child never finished burning"
            time.sleep(0.05)
        used = server.cpu_seconds()
        # the child burnt 0.4 s of its own CPU time; it only shows in the server's cutime
        # (ticks), plus the interpreter's start-up
        assert 0.35 <= used < 10, used


def test_cpu_seconds_grows_with_load():
    with ServerProcess("epoll") as server:
        before = server.cpu_seconds()
        with socket.create_connection(server.address, timeout=5) as sock:
            for _ in range(2000):
                sock.sendall(b"x" * 64)
                got = b""
                while len(got) < 64:
                    got += sock.recv(64)
        after = server.cpu_seconds()
    assert after > before  # 2000 round trips cost the server something
    assert after - before < 20


def test_session_cpu_counts_children_exactly():
    """session_cpu_s: the scheduler's runtime of every task of a session,
    a forked child's included (compare and claims rely on it)."""
    code = (
        "import os, sys, time\n"
        "def burn(s):\n"
        "    end = time.process_time() + s\n"
        "    while time.process_time() < end: pass\n"
        "pid = os.fork()\n"
        "burn(0.3)\n"
        "sys.stdout.write('done\\n'); sys.stdout.flush()\n"
        "time.sleep(5)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline() == b"done\n"
        assert proc.stdout.readline() == b"done\n"  # parent and child each burned 0.3 s
        time.sleep(0.05)
        assert len(session_group(proc.pid)) == 2
        assert 0.55 < session_cpu_s(proc.pid) < 2.0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# ----------------------------------------------------------------------
# start errors


def test_exit_before_ready_names_the_server_and_quotes_its_log(tmp_path):
    log = tmp_path / "fake.log"
    server = fake("exit", log_path=log)
    with pytest.raises(ServerStartError) as info:
        server.start()
    message = str(info.value)
    assert "exited with status 3" in message
    assert info.value.what == "exited with status 3 before its ready line"
    assert info.value.log_tail == ["fake: cannot start, on purpose"]
    assert "cannot start, on purpose" in message
    assert str(log) in message
    assert FAKE in message


def test_silent_server_times_out_and_is_killed():
    server = fake("silent", ready_timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match=r"no ready line within 0.5 s"):
        server.start()
    assert time.monotonic() - t0 < 8
    assert server.proc is not None and server.proc.returncode == -signal.SIGKILL


def test_malformed_ready_line_is_a_start_error():
    server = fake("garbage")
    with pytest.raises(ServerStartError, match=r"not a ready line.*hello there"):
        server.start()
    assert not pid_alive(server.pid)


def test_unavailable_model_is_a_start_error():
    # kqueue exists on BSD and macOS only; elsewhere `serve` refuses it with exit 2
    if sys.platform != "linux":
        pytest.skip("kqueue may be available here")
    with pytest.raises(ServerStartError, match=r"server kqueue: exited with status 2.*kqueue"):
        ServerProcess("kqueue").start()


def test_needs_a_model_or_a_command():
    with pytest.raises(ValueError):
        ServerProcess()
    server = ServerProcess("epoll")
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    assert server.stop() is None


# ----------------------------------------------------------------------
# machine() and ArgParser


def test_machine_describes_this_machine_and_code():
    info = machine()
    assert info["nproc"] == os.cpu_count()
    assert info["python"] == sys.version.split()[0]
    assert re.fullmatch(r"[0-9a-f]{12}", info["src_sha256"])


def test_argparser_error_is_one_line_and_exit_2():
    code = (
        "from iomodels.harness import ArgParser\n"
        "p = ArgParser(prog='x'); p.add_argument('--n', type=int); p.parse_args(['--n', 'two'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("x: error: argument --n")
    assert issubclass(ArgParser, __import__("argparse").ArgumentParser)


def test_rlimits_and_preexec_reach_the_server():
    def nice_me() -> None:  # runs in the child, before exec
        os.nice(3)

    limits = {resource.RLIMIT_SIGPENDING: (4, 4)}
    with ServerProcess("sigio", rlimits=limits, preexec=nice_me) as server:
        with open(f"/proc/{server.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max pending signals"))
        assert line.split()[3:5] == ["4", "4"]
        assert os.getpriority(os.PRIO_PROCESS, server.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3)
        assert server.stdout_after_ready == b""  # the ready line is all it printed


def test_nofile_and_pass_fds_reach_the_server():
    r, w = os.pipe()
    try:
        # the server raises its soft limit to the hard one at start: the hard one is what we set
        with ServerProcess("epoll", nofile=(64, 96), pass_fds=(r,)) as server:
            with open(f"/proc/{server.pid}/limits") as f:
                line = next(x for x in f if x.startswith("Max open files"))
            assert line.split()[3:5] == ["96", "96"]
            assert r in server.fds()
    finally:
        os.close(r)
        os.close(w)


def test_every_lazy_name_resolves():
    import iomodels.harness as harness

    assert sorted(harness.__all__) == sorted(harness._WHERE)
    for name in harness.__all__:
        assert getattr(harness, name) is not None
    with pytest.raises(AttributeError):
        _ = harness.no_such_name


def test_live_descendants_sees_a_server_and_its_child_until_stopped():
    server = fake("forks").start()
    child = child_pid(server)
    assert {server.pid, child} <= set(live_descendants())
    server.stop()
    assert not {server.pid, child} & set(live_descendants())


def test_split_cpus_never_shares_a_cpu():
    from iomodels.harness import split_cpus

    server, gen = split_cpus()
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        assert (server, gen) == (None, None)
    else:
        assert server == min(mine) and gen is not None
        assert server not in gen and {server, *gen} == mine
