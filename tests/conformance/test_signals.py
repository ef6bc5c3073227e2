"""SIGTERM / SIGINT: stop accepting, flush what can be flushed, close every
connection, exit 0 promptly, no process of the group left, nothing more on stdout."""

import signal
import socket
import threading
import time

import pytest

from helpers import (
    Server,
    recv_exactly,
    recv_until_eof,
    roundtrip,
    stuck_client,
    wait_group_gone,
)

pytestmark = pytest.mark.timeout(90)


def assert_clean_exit(
    server: Server, signum: int = signal.SIGTERM, within: float = 5.5, group: bool = False
) -> None:
    status, took = server.stop(signum, group=group)
    assert status == 0, f"exit status {status}; stderr:\n{server.stderr()[-3000:]}"
    assert took < within, f"took {took:.1f} s to exit"
    assert wait_group_gone(server.pid) == [], "processes of the server's group outlived it"
    assert server.stdout_rest == b"", f"stdout carried more than the ready line: {server.stdout_rest!r}"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_and_half_closed_clients(model, signum):
    """A half-closed client gets its reply, then EOF; an idle one sees its
    connection end; one perhaps still in the backlog does not hold the exit.
    SIGINT goes to the whole group, as Ctrl-C at a terminal sends it."""
    with Server(model, protocol="upper") as server:
        half = server.connect()  # first: `blocking` serves it, then the next
        half.sendall(b"half closed\n")
        half.shutdown(socket.SHUT_WR)
        idle = server.connect()
        roundtrip(idle, b"idle\n", b"IDLE\n")
        waiting = server.connect()  # only in the backlog for blocking
        waiting.sendall(b"w")
        time.sleep(0.3)
        if model == "processes":
            assert len(server.group_pids()) >= 2, "no forked child per connection in the group"
        assert_clean_exit(server, signum, within=2.5, group=signum == signal.SIGINT)
        assert recv_until_eof(idle, timeout=2) == (b"", "eof"), "the idle connection was not closed"
        assert recv_until_eof(half, timeout=5) == (b"HALF CLOSED\n", "eof")
        for sock in (idle, half, waiting):
            sock.close()


def test_signal_right_after_ready(model):
    """The ready line comes once the signal handlers are installed."""
    with Server(model, protocol="echo") as server:
        assert_clean_exit(server, within=2.5)


def test_busy_client(model):
    """A client in the middle of request/reply exchanges: served until the
    signal, then its connection ends (EOF or reset), within the exit budget."""
    with Server(model, protocol="echo") as server:
        sock = server.connect()
        exchanges = [0]
        ended: list[BaseException] = []

        def ping_pong() -> None:
            try:
                for _ in range(1_000_000):  # bounded: ends long before, by the server's close
                    sock.sendall(b"x" * 1000)
                    recv_exactly(sock, 1000, timeout=5)
                    exchanges[0] += 1
            except (OSError, EOFError) as exc:
                ended.append(exc)

        thread = threading.Thread(target=ping_pong, daemon=True)
        thread.start()
        time.sleep(0.5)
        assert exchanges[0] > 0 and not ended, f"not served before the signal: {ended!r}"
        assert_clean_exit(server, within=2.5)
        thread.join(5)
        assert not thread.is_alive(), "the busy client never saw its connection end"
        assert len(ended) == 1 and isinstance(ended[0], (EOFError, ConnectionError)), (
            f"the connection ended with {ended!r}, not an EOF or a reset"
        )
        sock.close()


def test_unread_output_is_bounded_by_graceful_timeout(model):
    with Server(model, "--graceful-timeout", "1", protocol="echo") as server:
        sock, flood = stuck_client(server)
        status, took = server.stop()
        assert status == 0, server.stderr()[-3000:]
        assert took < 4, f"took {took:.1f} s with a 1 s graceful timeout"
        assert wait_group_gone(server.pid) == []
        assert server.stdout_rest == b""
        flood.stop()
        sock.close()


BLOCKING_FAMILY = {"blocking", "threads", "processes", "threadpool"}


def assert_not_accepting(server: Server) -> None:
    """After the first signal a new client is not served: refused, closed or never answered."""
    try:
        late = server.connect(timeout=1)
    except OSError:
        return  # refused: the listener is closed
    with late:
        try:
            late.sendall(b"late")
            late.settimeout(0.6)
            got = late.recv(10)
        except (TimeoutError, ConnectionError):
            got = b""
        assert got == b"", f"a connection made after the signal was served: {got!r}"


def test_graceful_wait_then_second_signal_exits_at_once(model):
    """With output pending, the first signal stops accepting and waits
    (graceful timeout 30 s); the second exits at once.

    In the blocking models the pending output sits in the kernel, inside one
    sendall(), and the kernel may still complete that call after the signal
    (seen here on Linux 6.x); the worker then stops, correctly, having flushed.
    So for them the test sends the second signal right after the first.  For
    the others output also waits in user space; whether the kernel can still
    absorb it when the signal lands is up to it, so the setup is tried up to
    3 times and must hold once."""
    for _attempt in range(1 if model in BLOCKING_FAMILY else 3):
        with Server(model, "--graceful-timeout", "30", protocol="echo") as server:
            sock, flood = stuck_client(server)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.1 if model in BLOCKING_FAMILY else 0.5)
            if model not in BLOCKING_FAMILY and not server.alive():
                assert server.returncode == 0  # it could flush after all: fine, try again
                flood.stop()
                sock.close()
                continue
            assert_not_accepting(server)
            assert_clean_exit(server, signal.SIGTERM, within=2.0)
            flood.stop()
            sock.close()
            return
    pytest.fail("the server never had output pending at the first signal in 3 tries")
