"""--max-connections, --idle-timeout, running out of descriptors, and who waits
in the blocking models."""

import re
import time

import pytest

from helpers import Server, no_reply_within, recv_exactly, recv_until_eof, roundtrip

pytestmark = pytest.mark.timeout(90)


def test_max_connections(model):
    """Connections beyond the limit are accepted and closed at once, unserved;
    the others are untouched; a freed slot is served again."""
    if model == "blocking":
        pytest.skip("blocking never has a second connection accepted: it waits in the backlog")
    with Server(model, "--max-connections", "2", protocol="echo") as server:
        first, second = server.connect(), server.connect()
        roundtrip(first, b"first")
        roundtrip(second, b"second")
        with server.connect() as third:
            third.sendall(b"third")
            data, _how = recv_until_eof(third, timeout=5)
            assert data == b"", f"the connection beyond the limit was served: {data!r}"
        roundtrip(first, b"first again")
        roundtrip(second, b"second again")
        first.close()
        server.canary(retry_for=5)  # once the server has seen the close
        roundtrip(second, b"second last")
        second.close()


def test_idle_timeout(model):
    """An idle connection is closed after the timeout, not before; one that
    makes progress is kept."""
    with Server(model, "--idle-timeout", "1", protocol="echo") as server:
        idle = server.connect()
        busy = server.connect() if model != "blocking" else None
        roundtrip(idle, b"then silence")
        start = time.monotonic()
        if busy is not None:
            for i in range(8):  # progress every 0.25 s for 2 s: never idle
                roundtrip(busy, b"tick %d" % i)
                time.sleep(0.25)
        data, _how = recv_until_eof(idle, timeout=6)
        waited = time.monotonic() - start
        assert data == b"", data
        assert 0.5 <= waited < 5, f"the idle connection was closed after {waited:.2f} s (timeout 1 s)"
        if busy is not None:
            roundtrip(busy, b"still here")
            busy.close()
        idle.close()
        server.canary()


_NOT_A_RECORD = re.compile(r"^(Traceback|During handling|The above exception|\w+(\.\w+)*(Error|Exception)\b)")


def log_records(text: str) -> int:
    """Log records in ``text``: lines that start one, not a traceback's lines."""
    return sum(
        1 for ln in text.splitlines() if ln.strip() and not ln[0].isspace() and not _NOT_A_RECORD.match(ln)
    )


def test_descriptor_exhaustion(model):
    """RLIMIT_NOFILE 64 and 94 clients: no spinning, logged once, and service resumes."""
    with Server(model, protocol="echo", nofile=64) as server:
        clients = []
        try:
            for _ in range(94):
                clients.append(server.connect(timeout=5))
            time.sleep(0.5)
            records = log_records(server.stderr())
            cpu_before = server.cpu_seconds()
            time.sleep(1.0)
            cpu_used = server.cpu_seconds() - cpu_before
            if model != "nonblocking":  # which burns a CPU by design
                assert cpu_used < 0.5, f"server used {cpu_used:.2f} s of CPU in 1 s: spinning on accept?"
            more = log_records(server.stderr()) - records
            assert more <= 2, (
                f"{more} log records in 1 s out of descriptors (log once):\n{server.stderr()[-2000:]}"
            )
            assert server.alive()
        finally:
            for sock in clients:
                sock.close()
        server.canary(retry_for=15)  # once it has seen the closes, a fresh client is served


def test_blocking_serves_one_client_at_a_time():
    """The next client waits in the backlog while the first keeps being served."""
    with Server("blocking", protocol="upper") as server:
        first = server.connect()
        roundtrip(first, b"first\n", b"FIRST\n")
        with server.connect() as second:
            second.sendall(b"second\n")
            assert no_reply_within(second, 1.0), "blocking served a second client at once"
            roundtrip(first, b"still first\n", b"STILL FIRST\n")
            assert no_reply_within(second, 0.2)
            first.close()
            assert recv_exactly(second, 7, timeout=5, what="the waiting client's reply") == b"SECOND\n"
            roundtrip(second, b"more\n", b"MORE\n")
        server.canary()


def test_threadpool_client_n_plus_one_waits():
    """With --threads 2 a third client waits until a worker frees up; the pool goes on so."""
    with Server("threadpool", "--threads", "2", protocol="echo") as server:
        first, second = server.connect(), server.connect()
        roundtrip(first, b"a")
        roundtrip(second, b"b")
        with server.connect() as third:
            third.sendall(b"third")
            assert no_reply_within(third, 1.0), "a third client was served by a pool of 2"
            roundtrip(first, b"a again")
            roundtrip(second, b"b again")
            first.close()
            assert recv_exactly(third, 5, timeout=5, what="client 3 after a worker freed up") == b"third"
            roundtrip(third, b"c again")
            with server.connect() as fourth:
                fourth.sendall(b"d")
                assert no_reply_within(fourth, 1.0), "second and third hold both workers"
                second.close()
                assert recv_exactly(fourth, 1, timeout=5) == b"d"
