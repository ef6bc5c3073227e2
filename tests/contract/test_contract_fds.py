"""Contract: many descriptors -- the select FD_SETSIZE limit, many connections on readiness models,
and running out of descriptors on accept (EMFILE)."""

import os
import random
import re
import resource
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _contract_support import (
    Sockets,
    all_models,
    canary,
    canary_eventually,
    cpu_ticks,
    exchange,
    recv_until_eof,
    require_available,
    start_server,
)

pytestmark = pytest.mark.timeout(90)

MODELS = all_models()
READINESS = [m for m in ("select", "poll", "epoll", "asyncio", "uvloop") if m in MODELS]
MANY = 1200  # > FD_SETSIZE (1024)


@pytest.fixture
def socks():
    s = Sockets()
    try:
        yield s
    finally:
        s.close_all()


@pytest.fixture(autouse=True)
def _enough_fds_here():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _connect_many(srv, socks, n):
    out = []
    for _ in range(n):
        out.append(socks.add(srv.connect()))
    return out


def _closed_without_reply(sock, timeout=5.0):
    data, _how = recv_until_eof(sock, timeout)
    return data


@pytest.mark.parametrize("model", READINESS)
def test_many_connections_readiness_models(model, socks):
    # "5000 idle connections plus active ones for the readiness models (poll, epoll, asyncio, uvloop;
    #  select up to its limit)" -- here 1200, beyond FD_SETSIZE.
    # select: "a descriptor number >= FD_SETSIZE (1024) cannot be watched: that connection is closed right
    #  after accept (the client sees EOF or a reset), one warning goes to stderr, existing connections keep
    #  being served and new ones are accepted again when descriptors free up. Never a crash, never a hang"
    require_available(model)
    srv = start_server(model, protocol="echo")
    try:
        conns = _connect_many(srv, socks, MANY)
        time.sleep(0.3)
        assert srv.alive(), srv.stderr()[-3000:]
        exchange(conns[0], b"first")
        exchange(conns[500], b"middle")
        if model == "select":
            # the last ones cannot have a descriptor below 1024 on the server side
            data = _closed_without_reply(conns[-1])
            assert data == b"", data
            assert srv.stderr().strip(), "no warning on stderr for connections over FD_SETSIZE"
            exchange(conns[0], b"first again")
            # free low descriptors: new connections are accepted again
            for c in conns[1:150]:
                c.close()
            deadline = time.monotonic() + 8
            served = False
            while not served and time.monotonic() < deadline:
                s = srv.connect()
                try:
                    s.sendall(b"ping")
                    s.settimeout(2)
                    try:
                        served = s.recv(4) == b"ping"
                    except (TimeoutError, ConnectionResetError):
                        served = False
                finally:
                    s.close()
                if not served:
                    time.sleep(0.2)
            assert served, "no new connection served after descriptors were freed"
        else:
            rnd = random.Random(7)
            for i in [len(conns) - 1, *rnd.sample(range(len(conns)), 30)]:
                exchange(conns[i], b"conn %d" % i)
        assert srv.alive(), srv.stderr()[-3000:]
    finally:
        socks.close_all()
        srv.stop()


_RECORD_NOISE = re.compile(r"^(Traceback|During handling|The above exception|\w+(\.\w+)*(Error|Exception)\b)")


def _log_records(text):
    """Lines that start a log record (not traceback continuation lines)."""
    return [ln for ln in text.splitlines()
            if ln.strip() and not ln[0].isspace() and not _RECORD_NOISE.match(ln)]


@pytest.mark.parametrize("model", MODELS)
def test_fd_exhaustion_no_spin_and_recovery(model, socks):
    # "out of file descriptors (EMFILE/ENFILE) on accept: never spin; log once, back off, resume when
    #  descriptors free up".  The server raises its soft limit to the hard limit, so cap the hard one.
    require_available(model)
    limit = 64
    srv = start_server(model, protocol="echo", nofile=(limit, limit))
    try:
        conns = _connect_many(srv, socks, limit + 30)
        time.sleep(0.5)
        assert srv.alive(), srv.stderr()[-3000:]
        records_before = len(_log_records(srv.stderr()))
        t0, c0 = time.monotonic(), cpu_ticks(srv.pgid)
        time.sleep(1.0)
        t1, c1 = time.monotonic(), cpu_ticks(srv.pgid)
        records_after = len(_log_records(srv.stderr()))
        assert srv.alive(), srv.stderr()[-3000:]
        hz = os.sysconf("SC_CLK_TCK")
        cpu = (c1 - c0) / hz
        if model != "nonblocking":  # "burns a CPU by design"
            assert cpu < 0.5 * (t1 - t0), (
                f"server used {cpu:.2f}s CPU in {t1 - t0:.2f}s while out of descriptors (spinning)")
        assert records_after - records_before <= 2, (
            f"{records_after - records_before} log records in {t1 - t0:.1f}s while out of descriptors"
            f" (want: log once):\n{srv.stderr()[-2000:]}")
        for c in conns:
            c.close()
        socks.close_all()
        canary_eventually(srv, timeout=8)  # the server must first notice the closed connections
        canary(srv)
    finally:
        socks.close_all()
        srv.stop()


def _soft_nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def _listen_backlog(port):
    import shutil
    import subprocess
    if shutil.which("ss") is None:
        pytest.skip("the `ss` tool (iproute2) is not installed here: cannot read a listen backlog")
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"],
                         capture_output=True, text=True, timeout=10).stdout
    rows = [ln.split() for ln in out.splitlines() if ln.strip()]
    assert rows, f"no listening socket on port {port} according to ss"
    return int(rows[0][2])  # for LISTEN sockets, Send-Q is the backlog


@pytest.mark.parametrize("model", MODELS)
def test_defaults_raise_nofile_and_backlog_2048(model):
    # "Defaults: backlog 2048 ... The server raises its own open-file soft limit to the hard limit at start."
    require_available(model)
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    srv = start_server(model, protocol="echo", nofile=(256, 8192))
    try:
        assert _soft_nofile(srv.proc.pid) == 8192, "open-file soft limit not raised to the hard limit"
        assert _listen_backlog(srv.port) == min(2048, somaxconn)
    finally:
        srv.stop()


@pytest.mark.parametrize("model", ["threads", "epoll", "asyncio"])
def test_backlog_flag(model):
    require_available(model)
    srv = start_server(model, protocol="echo", extra=["--backlog", "64"])
    try:
        assert _listen_backlog(srv.port) == 64
    finally:
        srv.stop()
