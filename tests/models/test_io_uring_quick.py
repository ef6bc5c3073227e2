"""io_uring quick sends (IOSQE_CQE_SKIP_SUCCESS + MSG_DONTWAIT|MSG_WAITALL):
the QuickSends state on its own (no ring, no kernel), then through the
server: ordering across quick failures / buffered writes / back-pressure,
close and abort with a quick send pending, and the idle timeout of a
connection that only sends."""

import os
import socket
import threading
import time

import pytest

from iomodels import uring
from iomodels.models import io_uring
from iomodels.models._io_uring_quick import QuickSends
from iomodels.protocols.echo import EchoProtocol

from helpers import expect_eof, recv_exactly, serve_in_this_thread

_OK, _REASON = io_uring.Server.available()
pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(not _OK, reason=_REASON)]


def _quick_supported() -> bool:
    if not _OK:
        return False
    with uring.Ring(8) as ring:
        return ring.supports_quick_send


needs_quick = pytest.mark.skipif(not _quick_supported(), reason="this kernel has no quick sends")


def small_window_client(port: int, rcvbuf: int = 4096) -> socket.socket:
    """SO_RCVBUF before connect: shrinking it afterwards makes loopback TCP
    stall on its own (the window already advertised no longer fits)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    return sock


# ---- QuickSends on its own: staged -> queued -> settling -> settled


class FakeSq:
    """Ring.prep_quick_sends's stand-in: records what went into the SQ."""

    def __init__(self) -> None:
        self.sqes: list[tuple[bytes, bytes]] = []

    def prep_quick_sends(self, staged) -> None:
        self.sqes.extend(staged)


class Waiter:
    def __init__(self, quick: QuickSends, name: str, log: list) -> None:
        self.quick, self.name, self.log = quick, name, log

    def _settle(self) -> None:
        self.log.append(self.name)


def one_turn(quick: QuickSends, sq: FakeSq, failures: dict[int, int] | None = None) -> list[bytes | None]:
    """What the loop does around one enter: queue, enter (here: nothing),
    dispatch the batch (the failure CQEs given by user_data), end it."""
    if quick:
        quick.queue(sq.prep_quick_sends)
    quick.begin_batch()
    taken = [quick.take_failed(ud) for ud in failures or {}]
    quick.end_batch()
    return taken


def test_a_quick_send_is_pending_until_the_batch_after_its_enter():
    quick, sq = QuickSends(), FakeSq()
    stamp = quick.stage(8, b"sqe8", b"hello")
    assert quick.pending(stamp) and len(quick) == 1 and quick.unsubmitted
    assert quick.in_flight_bytes(8) == 5
    quick.queue(sq.prep_quick_sends)
    assert sq.sqes == [(b"sqe8", b"hello")] and len(quick) == 0
    assert quick.pending(stamp) and quick.unsubmitted  # queued: the enter must submit it
    assert quick.in_flight_bytes(8) == 5
    quick.begin_batch()  # the enter returned: its failure CQE, if any, is in this batch
    assert quick.pending(stamp) and not quick.unsubmitted
    assert quick.in_flight_bytes(8) == 5
    quick.end_batch()
    assert not quick.pending(stamp)
    assert quick.in_flight_bytes(8) == 0
    assert quick.pending(quick.stage(8, b"sqe8", b"again"))  # a newer one is pending again


def test_a_failure_hands_back_the_bytes_once():
    quick, sq = QuickSends(), FakeSq()
    quick.stage(8, b"sqe8", b"hello")
    quick.stage(16, b"sqe16", b"world")
    assert one_turn(quick, sq, failures={16: 2}) == [b"world"]
    assert quick.take_failed(16) is None  # settled: nothing left to take
    assert quick.take_failed(99) is None  # never staged


def test_an_enter_that_failed_does_not_queue_twice():
    """Queued but not submitted (the enter raised): the next queue() adds
    only what was staged since, the old entries stay queued once."""
    quick, sq = QuickSends(), FakeSq()
    quick.stage(8, b"sqe8", b"a")
    quick.queue(sq.prep_quick_sends)
    quick.stage(16, b"sqe16", b"b")
    quick.queue(sq.prep_quick_sends)
    assert sq.sqes == [(b"sqe8", b"a"), (b"sqe16", b"b")]
    assert quick.in_flight_bytes(8) == 1 and quick.in_flight_bytes(16) == 1
    one_turn(quick, sq)
    assert not quick.unsubmitted and sq.sqes == [(b"sqe8", b"a"), (b"sqe16", b"b")]


def test_waiters_are_told_in_order_after_the_batch_and_may_wait_again():
    quick, sq = QuickSends(), FakeSq()
    told: list[str] = []
    a, b = Waiter(quick, "a", told), Waiter(quick, "b", told)

    class WaitsAgain(Waiter):
        def _settle(self) -> None:
            super()._settle()
            if self.log.count(self.name) == 1:
                self.quick.wait_for_settle(self)  # a newer quick send: the next batch

    c = WaitsAgain(quick, "c", told)
    quick.stage(8, b"sqe8", b"x")
    quick.wait_for_settle(a)
    quick.wait_for_settle(c)
    quick.wait_for_settle(b)
    assert quick.waiting == [a, c, b]  # the loop's enter must not block meanwhile
    quick.begin_batch()
    assert told == []  # not before the batch is dispatched
    quick.end_batch()
    assert told == ["a", "c", "b"] and quick.waiting == [c]
    one_turn(quick, sq)
    assert told == ["a", "c", "b", "c"] and quick.waiting == []


def test_no_attribute_is_created_outside_init():
    quick = QuickSends()
    with pytest.raises(AttributeError):
        quick.extra = 1  # __slots__: the state is what __init__ lists


# ---- (bug) the idle timeout: a connection that only sends never makes "progress"


class Ticker(EchoProtocol):
    """Server push: after the first byte, write a line every 0.1 s (from a
    worker's done callback), never reading anything more."""

    def data_received(self, data: bytes) -> None:
        self.n = 0
        self._tick(None)

    def _tick(self, _future) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(b"tick %04d\n" % self.n)
        self.n += 1
        self.transport.run_in_worker(time.sleep, 0.1, done=self._tick)


def _drive_ticker(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"!")
        # README: "--idle-timeout S: a connection with no progress for S
        # seconds is closed".  Output flowing every 0.1 s is progress (the
        # readiness models and ordinary io_uring sends count it).
        got = recv_exactly(sock, 10 * 25, timeout=10)  # 2.5 s of ticks, idle timeout 1 s
        assert got.startswith(b"tick 0000\n")


@pytest.mark.parametrize("quick", [False, True], ids=["plain", "quick"])
def test_a_connection_that_only_sends_is_not_idle(quick):
    if quick and not _quick_supported():
        pytest.skip("this kernel has no quick sends")
    serve_in_this_thread(io_uring.Server, _drive_ticker, Ticker, idle_timeout_s=1.0, uring_quick_sends=quick)


# ---- ordering under stress: quick failures, buffered writes, back-pressure


class ThreeWrites(EchoProtocol):
    """Echo each chunk as three writes of three types, on a tiny send buffer:
    quick sends fail (-EAGAIN) or fall short; later writes are buffered
    behind them; back-pressure pauses and resumes reading."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    def data_received(self, data: bytes) -> None:
        a, b = len(data) // 3, 2 * len(data) // 3
        self.transport.write(data[:a])
        self.transport.write(bytearray(data[a:b]))
        self.transport.write(memoryview(data)[b:])


@needs_quick
def test_echo_order_holds_through_quick_failures_and_back_pressure():
    total = 3_000_000
    payload = os.urandom(total)

    def drive(port: int) -> None:
        socks = [small_window_client(port, 65536) for _ in range(4)]

        def send(sock):
            view = memoryview(payload)
            for off in range(0, total, 7919):  # odd chunks
                sock.sendall(view[off : off + 7919])

        threads = [threading.Thread(target=send, args=(s,), daemon=True) for s in socks]
        for t in threads:
            t.start()
        received = [bytearray() for _ in socks]
        deadline = time.monotonic() + 60
        while any(len(r) < total for r in received):
            assert time.monotonic() < deadline
            for sock, r in zip(socks, received, strict=True):
                if len(r) < total:
                    chunk = sock.recv(min(3000, total - len(r)))
                    assert chunk, f"EOF after {len(r)} bytes"
                    r += chunk
            time.sleep(0.0005)  # a slow reader: the server's output backs up
        for t in threads:
            t.join(5)
        for sock, r in zip(socks, received, strict=True):
            assert bytes(r) == payload
            sock.close()

    server = serve_in_this_thread(io_uring.Server, drive, ThreeWrites)
    assert server.statistics()["quick_failed"] > 0, server.statistics()


# ---- close()/abort() right after a quick send


class WriteThenClose(EchoProtocol):
    """Answer with 60 kB (a quick send) and close at once; a small send
    buffer makes the quick send fall short, so close must flush the rest."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"%08d" % len(data) * 7500)
        self.transport.write(b"tail")  # buffered behind the unsettled quick send
        self.transport.close()


@needs_quick
def test_close_right_after_a_short_quick_send_flushes_everything():
    def drive(port: int) -> None:
        socks = [small_window_client(port) for _ in range(20)]
        for sock in socks:
            sock.sendall(b"x")
        time.sleep(0.3)  # nothing read yet: the quick sends came back short
        for sock in socks:
            assert recv_exactly(sock, 60_004) == b"%08d" % 1 * 7500 + b"tail"
            assert expect_eof(sock)
            sock.close()

    server = serve_in_this_thread(io_uring.Server, drive, WriteThenClose)
    assert server.statistics()["quick_failed"] > 0, server.statistics()


class WriteThenAbort(EchoProtocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        self.transport.write(data)  # buffered, then dropped by abort
        self.transport.abort()


@needs_quick
def test_abort_with_a_quick_send_pending_releases_the_connection():
    def drive(port: int) -> None:
        for _ in range(3):
            socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
            for sock in socks:
                sock.sendall(b"hello")
            for sock in socks:
                sock.settimeout(5)
                got = b""
                try:
                    while chunk := sock.recv(100):
                        got += chunk
                except ConnectionResetError:
                    pass
                assert got in (b"", b"hello"), got  # never the buffered second copy
                sock.close()

    server = serve_in_this_thread(io_uring.Server, drive, WriteThenAbort)
    assert server.statistics()["accepted"] == 150
