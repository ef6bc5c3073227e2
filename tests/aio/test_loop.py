"""Our own checks of UringEventLoop: installation, the reasons it gives
when io_uring cannot be used, and the completion-loop invariants that
CPython's tests do not look at (buffers kept until their completion, close
draining the ring, level-triggered readers, wake-ups from other threads)."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time

import pytest

from iomodels import aio
from iomodels.aio import proactor as proactor_mod

ok, why = aio.available()
needs_uring = pytest.mark.skipif(not ok, reason=why or "io_uring available")


@pytest.fixture
def loop():
    loop = aio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def restore_policy():
    saved = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(saved)


def test_unavailable_says_why(monkeypatch):
    def no_ring(entries):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(proactor_mod, "_make_ring", no_ring)
    monkeypatch.setattr(proactor_mod.uring, "probe", lambda: (False, "io_uring_setup: EPERM (seccomp?)"))
    with pytest.raises(aio.UringUnavailable, match=r"EPERM \(seccomp\?\)"):
        aio.new_event_loop()
    assert aio.available() == (False, "cannot create the io_uring loop: io_uring_setup: EPERM (seccomp?)")
    with pytest.warns(RuntimeWarning, match="default event loop"):
        fallback = aio.new_event_loop(fallback=True)
    try:
        assert not isinstance(fallback, aio.UringEventLoop)
        assert fallback.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        fallback.close()


@needs_uring
def test_missing_opcode_is_named(monkeypatch):
    monkeypatch.setattr(proactor_mod.uring.Ring, "supports", lambda self, op: op != 6)
    with pytest.raises(aio.UringUnavailable, match=r"lacks POLL_ADD \(Linux 5\.1\+\)"):
        aio.UringProactor()


@needs_uring
def test_install_makes_every_new_loop_ours(restore_policy):
    aio.install()

    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main()) is aio.UringEventLoop


@needs_uring
def test_cancelled_recv_keeps_its_buffer_until_the_completion(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        proactor = loop._proactor
        fut = proactor.recv(a, 100)
        loop.run_until_complete(asyncio.sleep(0.01))  # submitted, parked in the kernel
        ud = fut._ud
        # The proactor's cache holds the buffer (its keeper), not the ring.
        assert proactor._cache[ud][2] is not None
        fut.cancel()
        assert fut.cancelled()
        # The future is cancelled but the kernel may still write into the
        # buffer until the -ECANCELED completion: the entry stays till then.
        assert proactor._cache[ud][2] is not None
        loop.run_until_complete(asyncio.sleep(0.01))
        assert ud not in proactor._cache
        # Nothing was consumed by the cancelled recv: the next one sees it.
        b.send(b"after")
        assert loop.run_until_complete(loop.sock_recv(a, 100)) == b"after"


@needs_uring
def test_close_drains_every_operation():
    loop = aio.new_event_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        tasks = [loop.create_task(loop.sock_recv(a, 10)) for _ in range(3)]
        loop.run_until_complete(asyncio.sleep(0.01))
        proactor = loop._proactor
        ring = proactor._ring
        assert sum(1 for entry in proactor._cache.values() if entry[2] is not None) >= 3
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()
        assert proactor._cache == {}
        assert ring.closed


@needs_uring
def test_reader_is_level_triggered(loop):
    a, b = socket.socketpair()
    with a, b:
        calls = []
        loop.add_reader(a, calls.append, 1)
        b.send(b"x")  # never read: a selector loop would call back every turn
        loop.run_until_complete(asyncio.sleep(0.05))
        assert len(calls) >= 3
        assert loop.remove_reader(a)
        assert not loop.remove_reader(a)
        n = len(calls)
        loop.run_until_complete(asyncio.sleep(0.02))
        assert len(calls) == n


@needs_uring
def test_call_soon_threadsafe_wakes_a_waiting_loop(loop):
    # No timer and no IO: the loop sleeps in io_uring_enter until the
    # self-pipe read completes.
    threading.Timer(0.05, loop.call_soon_threadsafe, (loop.stop,)).start()
    start = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - start < 2.0


@needs_uring
def test_closed_server_stops_accepting_at_once(loop):
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        # The accept parked in the ring held a reference to the listener;
        # _stop_serving cancels it so the port is really closed.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    loop.run_until_complete(main())


@needs_uring
def test_sendall_of_more_than_the_socket_buffer(loop):
    payload = bytes(range(256)) * 16384  # 4 MiB: many short sends
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:

        async def reader():
            got = bytearray()
            while len(got) < len(payload):
                chunk = await loop.sock_recv(b, 65536)
                assert chunk
                got += chunk
            return bytes(got)

        async def main():
            r = asyncio.ensure_future(reader())
            await loop.sock_sendall(a, payload)
            return await r

        assert loop.run_until_complete(main()) == payload


@needs_uring
def test_loop_made_in_one_thread_runs_in_another(loop):
    # The ring is set up without SINGLE_ISSUER for this: a loop created in
    # one thread and run in another must work (executors, test runners).
    result = []

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        with a, b:
            b.send(b"ping")
            result.append(await loop.sock_recv(a, 10))

    t = threading.Thread(target=loop.run_until_complete, args=(main(),))
    t.start()
    t.join(10)
    assert result == [b"ping"]


@needs_uring
@pytest.mark.parametrize("family", ["inet", "inet6", "unix", "abstract"])
def test_sock_connect_goes_through_the_ring(loop, family, tmp_path, monkeypatch):
    # IORING_OP_CONNECT with a sockaddr we build: the poll fallback must not
    # be needed for any of the families asyncio connects.
    monkeypatch.setattr(loop._proactor, "_connect_by_poll", None)
    if family == "inet6" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    fam = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}.get(family, socket.AF_UNIX)
    address = {
        "inet": ("127.0.0.1", 0),
        "inet6": ("::1", 0),
        "unix": str(tmp_path / "s"),
        "abstract": b"\0iomodels-aio-test-%d" % id(loop),
    }[family]
    with socket.socket(fam) as listener, socket.socket(fam) as client:
        try:
            listener.bind(address)
        except OSError as exc:
            pytest.skip(f"cannot bind {family}: {exc}")
        listener.listen(1)
        client.setblocking(False)
        loop.run_until_complete(loop.sock_connect(client, listener.getsockname()))
        conn, _ = listener.accept()
        with conn:
            conn.send(b"via the ring")
            assert loop.run_until_complete(loop.sock_recv(client, 100)) == b"via the ring"


@needs_uring
@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_udp_goes_through_the_ring(loop, family, host, monkeypatch):
    # SENDMSG / RECVMSG with the sender's address parsed back from the
    # msghdr: the poll fallback must not be needed.
    monkeypatch.setattr(loop._proactor, "_poll", None)
    with socket.socket(family, socket.SOCK_DGRAM) as a, socket.socket(family, socket.SOCK_DGRAM) as b:
        try:
            a.bind((host, 0))
            b.bind((host, 0))
        except OSError as exc:
            pytest.skip(f"cannot bind {host}: {exc}")
        a.setblocking(False)
        b.setblocking(False)

        async def main():
            assert await loop.sock_sendto(a, b"datagram", b.getsockname()) == 8
            data, addr = await loop.sock_recvfrom(b, 100)
            assert (data, addr) == (b"datagram", a.getsockname())
            buf = bytearray(16)
            await loop.sock_sendto(b, b"back", addr)
            assert await loop.sock_recvfrom_into(a, buf) == (4, b.getsockname())
            assert buf[:4] == b"back"

        loop.run_until_complete(main())


# -- the lean _run_once / call_soon / call_later (loop.py): asyncio's semantics


@needs_uring
def test_handles_are_asyncios(loop):
    handle = loop.call_soon(print)
    timer = loop.call_later(10, print)
    assert isinstance(handle, asyncio.Handle) and repr(handle).startswith("<Handle print()")
    assert isinstance(timer, asyncio.TimerHandle) and timer in loop._scheduled and timer._scheduled
    assert abs(timer.when() - (loop.time() + 10)) < 1
    handle.cancel()
    timer.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    assert timer not in loop._scheduled  # a cancelled timer at the head of the heap is dropped


@needs_uring
def test_callbacks_run_in_order_and_a_raising_one_is_reported(loop):
    ran, reported = [], []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    def boom():
        raise ValueError("boom")

    first = loop.call_soon(ran.append, 1)
    loop.call_soon(boom)
    loop.call_soon(ran.append, 2)
    loop.call_at(loop.time() - 1, ran.append, "due")  # a timer already due runs after the ready ones
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1, 2, "due"]
    [context] = reported
    assert isinstance(context["exception"], ValueError)
    assert context["message"].startswith("Exception in callback ") and "boom" in context["message"]
    assert isinstance(context["handle"], asyncio.Handle) and context["handle"] is not first


@needs_uring
def test_a_handle_with_its_own_run_keeps_it(loop):
    ran = []

    class Traced(asyncio.Handle):
        __slots__ = ()

        def _run(self):
            ran.append("traced")
            super()._run()

    loop._ready.append(Traced(ran.append, ("callback",), loop))
    loop.run_until_complete(asyncio.sleep(0))
    assert ran == ["traced", "callback"]


@needs_uring
def test_debug_mode_logs_a_slow_callback(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    with caplog.at_level("WARNING", logger="asyncio"):
        loop.run_until_complete(asyncio.sleep(0.05))
    [slow] = [r.getMessage() for r in caplog.records if "Executing <Handle sleep(0.03)" in r.getMessage()]
    assert "created at " + __file__ in slow  # the caller's line, not the loop's


@needs_uring
def test_debug_mode_handles_say_where_they_were_made(loop):
    loop.set_debug(True)
    here = __file__
    for handle in (loop.call_soon(print), loop.call_later(10, print), loop.call_at(loop.time() + 10, print)):
        assert handle._source_traceback[-1].filename == here, handle._source_traceback[-1]
        handle.cancel()


# -- the stream transport's writes within one turn (transport.py)


@needs_uring
@pytest.mark.parametrize("sizes", [[7, 9, 11], [20_000] * 3, [30_000, 30_000, 30_000, 5], [70_000, 3, 1]])
def test_writes_in_one_turn_arrive_whole_and_in_order(loop, sizes):
    # Several writes in one callback: joined into one quick send while they
    # fit, queued behind it beyond that; what is staged counts as buffered.
    chunks = [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    sizes_seen = []

    class Burst(asyncio.Protocol):
        def connection_made(self, transport):
            for chunk in chunks:
                transport.write(chunk)
                sizes_seen.append(transport.get_write_buffer_size())
            transport.close()

    async def main():
        server = await loop.create_server(Burst, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        data = await reader.read()  # up to EOF
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"".join(chunks)
    total = 0
    for n, seen in zip(sizes, sizes_seen, strict=True):
        total += n
        assert seen <= total  # never more than was written; sent at once counts as 0
    if sum(sizes) <= 64 * 1024:  # one quick send, staged until the turn's enter
        assert sizes_seen == [sum(sizes[: i + 1]) for i in range(len(sizes))]
