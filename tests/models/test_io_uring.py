"""io_uring model: what only a completion-based loop has to get right.

The conformance suite already runs every contract test on this model; here:
availability and its reason, shutdown with completions still in the kernel,
back-pressure by not re-arming recv, one enter per turn (statistics), and
EMFILE on a completion (logged once, no spin)."""

import logging
import os
import signal
import socket
import threading
import time

import pytest

from iomodels import uring
from iomodels.models import io_uring
from iomodels.protocols.echo import EchoProtocol

from helpers import Server, expect_eof, recv_exactly, serve_in_this_thread, wait_group_gone

_OK, _REASON = io_uring.Server.available()

pytestmark = pytest.mark.timeout(90)
needs_uring = pytest.mark.skipif(not _OK, reason=_REASON)


def test_available_gives_the_probe_reason(monkeypatch):
    monkeypatch.setattr(uring, "probe", lambda: (False, "io_uring_setup: EPERM (seccomp?)"))
    assert io_uring.Server.available() == (False, "io_uring_setup: EPERM (seccomp?)")


@needs_uring
def test_available_here_names_the_setup():
    ok, reason = io_uring.Server.available()
    assert ok and reason.startswith("io_uring: setup"), reason


def test_user_data_names_connection_and_kind():
    # Kinds of connection 0 are the server's own; they never collide with a
    # connection's recv/send, whatever its id.
    for conn_id in (1, 2, 12345, 2**40):
        recv = (conn_id << io_uring.KIND_BITS) | io_uring.K_RECV
        send = (conn_id << io_uring.KIND_BITS) | io_uring.K_SEND
        assert recv >> io_uring.KIND_BITS == send >> io_uring.KIND_BITS == conn_id
        assert len({recv, send, io_uring.UD_ACCEPT, io_uring.UD_WAKEUP, io_uring.UD_CANCEL}) == 5


def stuck_client(server: Server) -> tuple[socket.socket, list[int]]:
    """Sends without ever reading, until the server has a send in the
    kernel that cannot complete (the client's window is closed)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((server.host, server.port))
    sent = [0]

    def flood() -> None:
        try:
            while True:
                sock.sendall(b"z" * 65536)
                sent[0] += 65536
        except OSError:
            pass

    threading.Thread(target=flood, daemon=True).start()
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and time.monotonic() - since < 0.7:
        time.sleep(0.05)
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
    return sock, sent


@needs_uring
def test_sigterm_with_completions_pending_exits_zero():
    """A send stuck in the kernel, recvs armed on idle connections, the
    multishot accept: SIGTERM cancels them all, reaps the -ECANCELED
    completions, closes every fd and exits 0 at the graceful deadline."""
    with Server("io_uring", "--graceful-timeout", "1", protocol="echo") as server:
        idle = [server.connect() for _ in range(20)]
        stuck, _ = stuck_client(server)
        status, took = server.stop(signal.SIGTERM)
        assert status == 0, server.stderr()[-3000:]
        assert 0.8 < took < 3.5, f"took {took:.1f} s with a 1 s graceful timeout"
        assert wait_group_gone(server.pid) == []
        log = server.stderr()
        assert "did not complete at exit" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert "io_uring statistics:" in log
        for sock in idle:
            assert expect_eof(sock, timeout=2)
            sock.close()
        stuck.close()


@needs_uring
def test_second_signal_with_a_stuck_send_exits_at_once():
    with Server("io_uring", "--graceful-timeout", "30", protocol="echo") as server:
        stuck, _ = stuck_client(server)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert server.proc.poll() is None, "exited before the graceful deadline with output pending"
        status, took = server.stop(signal.SIGTERM)
        assert status == 0 and took < 1.5, (status, took)
        assert wait_group_gone(server.pid) == []
        stuck.close()


@needs_uring
def test_recv_not_rearmed_over_high_water():
    """A peer that sends and never reads: once the reply is over HIGH_WATER,
    no recv is armed, so the sender stalls on full socket buffers and the
    server holds no more than its fixed recv pool (4 MiB, resident once
    used) plus one high-water mark of output."""
    with Server("io_uring", protocol="echo") as server:
        sock = server.connect(timeout=30)
        sock.sendall(b"hi")
        assert recv_exactly(sock, 2) == b"hi"
        time.sleep(0.2)
        baseline = server.rss_bytes()
        sent = [0]
        block = os.urandom(1 << 20)

        def send_all() -> None:
            try:
                for _ in range(64):
                    sock.sendall(block)
                    sent[0] += len(block)
            except OSError:
                pass

        threading.Thread(target=send_all, daemon=True).start()
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and time.monotonic() - since < 1.0:
            time.sleep(0.1)
            if sent[0] != last:
                last, since = sent[0], time.monotonic()
        growth = server.rss_bytes() - baseline
        # Socket buffers both ways (a few MiB on loopback) bound what got through.
        assert sent[0] < 32 << 20, f"the server kept reading: {sent[0] >> 20} MiB accepted"
        assert growth < 8 << 20, f"RSS grew by {growth >> 20} MiB"
        # Then it reads again, and everything comes back in order.
        sock.settimeout(10)
        got = 0
        while got < 4 << 20:
            chunk = sock.recv(1 << 20)
            assert chunk
            got += len(chunk)
        sock.close()
        server.canary()


@needs_uring
def test_emfile_logged_once_and_no_spin():
    with Server("io_uring", protocol="echo", nofile=48) as server:
        clients = []
        try:
            for _ in range(60):
                clients.append(socket.create_connection((server.host, server.port), timeout=5))
            time.sleep(0.5)
            cpu = server.cpu_seconds()
            time.sleep(2.2)  # two accept retries (ACCEPT_RETRY_DELAY_S), still exhausted
            assert server.cpu_seconds() - cpu < 0.5
            assert server.stderr().count("pausing accepts") == 1, server.stderr()[-2000:]
        finally:
            for sock in clients:
                sock.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                server.canary()
                break
            except (OSError, AssertionError):
                assert time.monotonic() < deadline, server.stderr()[-2000:]
                time.sleep(0.2)


@needs_uring
def test_statistics_count_batching():
    """50 clients echo concurrently: completions per enter > 1 (one enter
    per turn reaps many CQEs), and SQEs are submitted in batches."""
    clients, rounds = 50, 20

    def drive(port: int) -> None:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
        for r in range(rounds):
            for i, sock in enumerate(socks):
                sock.sendall(b"%d:%d;" % (r, i))
            for i, sock in enumerate(socks):
                msg = b"%d:%d;" % (r, i)
                assert recv_exactly(sock, len(msg)) == msg
        for sock in socks:
            sock.close()

    stats = serve_in_this_thread(io_uring.Server, drive, uring_quick_sends=False).statistics()
    logging.getLogger("iomodels").info("statistics (ordinary sends): %s", stats)
    assert stats["accepted"] == clients
    assert stats["connections"] == 0
    # Each request is at least a recv and a send completion.
    assert stats["completions"] >= 2 * clients * rounds
    assert stats["completions_per_enter"] > 1.5, stats
    assert stats["enters"] < stats["completions"]
    assert stats["submitted"] >= clients * rounds  # one send SQE per request at least

    server = serve_in_this_thread(io_uring.Server, drive)
    stats = server.statistics()
    logging.getLogger("iomodels").info("statistics (quick sends): %s", stats)
    if not server._quick_sends:
        pytest.skip("this kernel has no quick sends (IORING_FEAT_CQE_SKIP or MSG_DONTWAIT failing fast)")
    # A quick send that goes out whole posts no CQE: about one completion
    # (the recv) per request, still one send SQE per request.
    assert clients * rounds <= stats["completions"] < 1.5 * clients * rounds, stats
    assert stats["submitted"] >= clients * rounds
    assert stats["quick_failed"] < clients * rounds / 10, stats


class Blast(EchoProtocol):
    """Answers every message with one 60 kB write (under HIGH_WATER: a
    quick send when nothing else is queued), numbered so order shows."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.count = 0
        # A small send buffer: once the peer's window is full, a 60 kB send
        # can only go out in part.
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    def data_received(self, data: bytes) -> None:
        for _ in range(len(data)):
            self._write(b"%08d" % self.count * 7500)
            self.count += 1


@needs_uring
def test_quick_send_that_cannot_go_out_whole_becomes_an_ordinary_send():
    """A peer that asks for 3 MB of replies and reads none until later:
    once its window is full a quick send comes back short or with -EAGAIN;
    the rest of it, and every reply written after it, arrives whole and in
    order."""
    replies = 50

    def drive(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for _ in range(replies):
                sock.sendall(b"?")
                time.sleep(0.001)  # one recv, so one write, per message (mostly)
            time.sleep(0.5)  # the server's output backs up
            got = recv_exactly(sock, replies * 60_000)
            for n in range(replies):
                assert got[n * 60_000 : (n + 1) * 60_000] == b"%08d" % n * 7500, f"reply {n}"

    server = serve_in_this_thread(io_uring.Server, drive, Blast)
    if not server._quick_sends:
        pytest.skip("this kernel has no quick sends")
    assert server.statistics()["quick_failed"] > 0, server.statistics()


class TwoWrites(EchoProtocol):
    """Answers each message with two writes: the second finds the first
    (a quick send) not settled yet, so it must wait for it, in order."""

    def data_received(self, data: bytes) -> None:
        half = len(data) // 2
        self._write(data[:half])
        self.transport.write(bytearray(data[half:]))


@needs_uring
def test_writes_while_a_quick_send_settles_keep_their_order():
    payload = bytes(range(256)) * 200

    def drive(port: int) -> None:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
        for _ in range(20):
            for sock in socks:
                sock.sendall(payload)
            for sock in socks:
                assert recv_exactly(sock, len(payload)) == payload
        for sock in socks:
            sock.close()

    server = serve_in_this_thread(io_uring.Server, drive, TwoWrites)
    assert server.statistics()["accepted"] == 10


class OneShotServer(io_uring.Server):
    multishot_accept = False
    multishot_recv = False


@needs_uring
def test_one_shot_fallbacks_echo_bulk_and_half_close():
    """The paths for kernels without multishot accept / recv: a re-armed
    accept per connection, a re-armed recv per completion."""
    data = os.urandom(3 << 20)

    def drive(port: int) -> None:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                received = bytearray()
                sender = threading.Thread(target=sock.sendall, args=(data,))
                sender.start()
                time.sleep(0.2)  # let the server's output pass the high-water mark
                while len(received) < len(data):
                    chunk = sock.recv(1 << 20)
                    assert chunk
                    received += chunk
                sender.join(10)
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(1) == b""
                assert bytes(received) == data

    server = serve_in_this_thread(OneShotServer, drive)
    assert not server._multishot_accept and not server._multishot_recv
    assert server.statistics()["accepted"] == 3


@needs_uring
@pytest.mark.parametrize("sends", ["quick", "plain"])
def test_dispatch_harness_runs(sends):
    """bench/uring_dispatch.py drives the model's private hot path
    (_open_ring, _dispatch, _quick): keep it working as the model changes."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "uring_dispatch.py"
    spec = importlib.util.spec_from_file_location("uring_dispatch", path)
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    with uring.Ring(8) as ring:
        if sends == "quick" and not ring.supports_quick_send:
            pytest.skip("this kernel has no quick sends")
    per_request = harness.measure(sends, connections=4, batch=3, batches=50, msize=100)
    assert 0 < per_request < 0.01  # seconds: a real figure, not a hang or a zero
