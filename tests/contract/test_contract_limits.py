"""Contract: back-pressure, --max-connections, --idle-timeout, on every model."""

import hashlib
import os
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _contract_support import (
    Sockets,
    StalledSender,
    all_models,
    canary,
    exchange,
    group_rss,
    recv_until_eof,
    require_available,
    start_server,
)

pytestmark = pytest.mark.timeout(90)

MODELS = all_models()
MiB = 1 << 20


@pytest.fixture
def socks():
    s = Sockets()
    try:
        yield s
    finally:
        s.close_all()


@pytest.mark.parametrize("model", MODELS)
def test_back_pressure_bounded_memory_then_everything_returns(model, socks):
    # "back-pressure: while a connection's pending output is over 64 KiB the server stops reading from it,
    #  and resumes below 16 KiB, so a client that sends 50 MiB without reading grows server memory by
    #  less than 16 MiB"
    require_available(model)
    srv = start_server(model, protocol="echo")
    try:
        s = socks.add(srv.connect())
        exchange(s, b"warm-up " * 1000)  # the connection is being served (a child exists for `processes`)
        time.sleep(0.2)
        baseline = group_rss(srv.pgid)
        assert baseline > 0
        sender = StalledSender(s, 50 * MiB).start()
        peak = baseline
        # let it run until it stalls (or, with no back-pressure, until the server swallowed it all)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            peak = max(peak, group_rss(srv.pgid))
            if sender.done or sender.error or time.monotonic() - sender.last_progress > 0.6:
                break
            time.sleep(0.05)
        for _ in range(5):
            peak = max(peak, group_rss(srv.pgid))
            time.sleep(0.05)
        assert sender.error is None, f"sending failed: {sender.error!r}"
        assert srv.alive(), srv.stderr()[-3000:]
        growth = peak - baseline
        assert growth < 16 * MiB, (
            f"server memory grew by {growth / MiB:.1f} MiB while the client sent"
            f" {sender.sent / MiB:.1f} MiB without reading")
        # now read: everything must come back, and the sender must be able to finish
        h = hashlib.sha256()
        received = 0
        s.settimeout(5)
        last = time.monotonic()
        while received < 50 * MiB:
            try:
                chunk = s.recv(1 << 20)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                break
            if chunk:
                h.update(chunk)
                received += len(chunk)
                last = time.monotonic()
                peak = max(peak, group_rss(srv.pgid)) if received % (8 * MiB) < len(chunk) else peak
            elif time.monotonic() - last > 10:
                break
        sender.thread.join(10)
        assert sender.done, f"sender could not finish: sent {sender.sent}, error {sender.error!r}"
        assert received == 50 * MiB, f"got {received} of {50 * MiB} bytes back"
        assert h.hexdigest() == sender.sha, "echoed stream differs from what was sent"
        growth = peak - baseline
        assert growth < 16 * MiB, f"server memory grew by {growth / MiB:.1f} MiB while streaming"
        s.shutdown(socket.SHUT_WR)
        rest, how = recv_until_eof(s)
        assert rest == b"" and how == "eof"
        canary(srv)
    finally:
        socks.close_all()
        srv.stop()


def _closed_at_once(sock, timeout=5.0):
    """True if the peer closes (EOF or reset) within TIMEOUT without sending anything."""
    data, how = recv_until_eof(sock, timeout)
    return data, how


@pytest.mark.parametrize("model", [m for m in MODELS if m != "blocking"])
def test_max_connections_extra_is_accepted_then_closed(model, socks):
    # "--max-connections: connections beyond it are accepted and closed at once"
    # (`blocking` serves one client at a time and leaves the next in the backlog, so there is no
    #  accepted-but-over-the-limit connection to observe there.)
    require_available(model)
    srv = start_server(model, protocol="echo", extra=["--max-connections", "2", "--backlog", "64"])
    try:
        a = socks.add(srv.connect())
        b = socks.add(srv.connect())
        exchange(a, b"a1")
        exchange(b, b"b1")
        c = socks.add(srv.connect())
        data, _how = _closed_at_once(c)
        assert data == b"", f"the connection over the limit was served: {data!r}"
        # the two within the limit still work
        exchange(a, b"a2")
        exchange(b, b"b2")
        # free a slot: a new connection is served again
        a.close()
        deadline = time.monotonic() + 5
        served = False
        last = None
        while time.monotonic() < deadline and not served:
            d = srv.connect()
            try:
                d.sendall(b"d")
                got, _how = b"", None
                d.settimeout(2)
                try:
                    got = d.recv(1)
                except (TimeoutError, ConnectionResetError) as exc:
                    last = exc
                served = got == b"d"
            finally:
                d.close()
            if not served:
                time.sleep(0.1)
        assert served, f"no new connection served after a slot was freed ({last!r})"
        exchange(b, b"b3")
        assert srv.alive()
    finally:
        socks.close_all()
        srv.stop()


@pytest.mark.parametrize("model", MODELS)
def test_idle_timeout_closes_idle_keeps_active(model, socks):
    # "--idle-timeout: a connection with no progress for that long is closed"
    require_available(model)
    srv = start_server(model, protocol="echo", extra=["--idle-timeout", "1"])
    try:
        idle = socks.add(srv.connect())
        exchange(idle, b"then silence")
        t_idle = time.monotonic()
        active_result = {}

        def active_client():
            try:
                s = srv.connect()
                socks.add(s)
                for i in range(8):
                    exchange(s, b"tick %d" % i, timeout=6)
                    time.sleep(0.15)
                active_result["ok"] = True
            except Exception as exc:
                active_result["error"] = repr(exc)

        t = threading.Thread(target=active_client, daemon=True)
        t.start()
        data, _how = recv_until_eof(idle, 1 + 6)
        waited = time.monotonic() - t_idle
        assert data == b"", data
        assert waited >= 0.5, f"idle connection closed after {waited:.2f}s, well before the 1 s idle timeout"
        t.join(30)
        assert active_result.get("ok"), f"active connection was disturbed: {active_result}"
        canary(srv)
    finally:
        socks.close_all()
        srv.stop()
