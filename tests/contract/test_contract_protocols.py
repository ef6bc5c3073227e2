"""Contract: the echo and upper protocols, streaming, half-close, resets, on every model.

One echo server and one upper server per model for the whole module; tests
that fault a connection end with a canary on the same server.
"""

import os
import random
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _contract_support import (
    READY_RE,
    Sockets,
    StalledSender,
    all_models,
    canary,
    exchange,
    recv_exact,
    recv_until_eof,
    ref_upper,
    require_available,
    reset_close,
    round_trip,
    start_server,
)

pytestmark = pytest.mark.timeout(60)

MODELS = all_models()


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    require_available(request.param)
    return request.param


@pytest.fixture(scope="module")
def echo_server(model):
    srv = start_server(model, protocol="echo")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def upper_server(model):
    srv = start_server(model, protocol="upper")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def socks():
    s = Sockets()
    try:
        yield s
    finally:
        s.close_all()


# ---------------------------------------------------------------- ready line


def test_ready_line_exact(echo_server, upper_server, model):
    # "listening on HOST:PORT model=MODEL protocol=PROTOCOL"
    for srv, proto in ((echo_server, "echo"), (upper_server, "upper")):
        want = f"listening on 127.0.0.1:{srv.port} model={model} protocol={proto}"
        assert srv.ready_line == want, srv.ready_line
        assert READY_RE.match(srv.ready_line)
        assert 0 < srv.port < 65536


# ---------------------------------------------------------------- echo


@pytest.mark.parametrize("size", [0, 1, 1000, 65536 + 7, 1 << 20])
def test_echo_byte_exact(echo_server, size):
    # "echo: every byte comes back unchanged, in order."
    rnd = random.Random(size)
    data = rnd.randbytes(size)
    got, how = round_trip(echo_server, data, timeout=20)
    assert len(got) == len(data), f"{len(got)} bytes back for {len(data)} sent"
    assert got == data, "echo is not byte-exact"
    assert how == "eof", "half-closed connection was reset instead of closed"


def test_echo_all_byte_values_interactive(echo_server, socks):
    s = socks.add(echo_server.connect())
    for i in range(4):
        exchange(s, bytes(range(256)) * (i + 1))


def test_concurrent_clients_no_crosstalk(echo_server):
    # several clients at once, each gets exactly its own bytes back
    n = 12
    results = [None] * n

    def client(i):
        data = (b"%03d:" % i) + random.Random(i).randbytes(20000)
        try:
            got, _ = round_trip(echo_server, data, timeout=40)
            results[i] = got == data or f"client {i}: {len(got)} bytes, mismatch"
        except Exception as exc:
            results[i] = repr(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    assert all(r is True for r in results), results


# ---------------------------------------------------------------- upper


def test_upper_text_session(upper_server, socks):
    # "printf 'hello\nstraße\n' | iomodels client prints HELLO and STRASSE"
    s = socks.add(upper_server.connect())
    exchange(s, b"hello\n", b"HELLO\n")
    exchange(s, "straße\n".encode(), b"STRASSE\n")
    exchange(s, "é\n".encode(), "É\n".encode())


SAMPLE = "aß é ŉ ﬃ ǆ ΐ 日本 😀 z".encode()


def test_upper_split_at_every_offset(upper_server, socks):
    # "a character split across packets is upper-cased correctly"
    s = socks.add(upper_server.connect())
    sent = bytearray()
    received = bytearray()
    for off in range(1, len(SAMPLE)):
        a, b = SAMPLE[:off], SAMPLE[off:]
        s.sendall(a)
        time.sleep(0.003)
        s.sendall(b)
        sent += a + b
        want = ref_upper(bytes(sent))
        received += recv_exact(s, len(want) - len(received), what=f"reply after split at {off}")
        assert bytes(received) == want, f"split at byte {off}: {bytes(received[-80:])!r} != {want[-80:]!r}"


INVALID = [
    b"\xff",
    b"\xfe\xfe",
    b"\xc3(",            # lead byte then ASCII
    b"\xe6\x97x",        # truncated 3-byte sequence then ASCII
    b"\xc0\xaf",         # overlong
    b"\xed\xa0\x80",     # encoded surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\x80\x80abc",      # stray continuation bytes
    b"\xf0\x9f\x98",     # truncated 4-byte then more text
]


def test_upper_invalid_utf8_passes_through(upper_server, socks):
    # "bytes that are not UTF-8 pass through unchanged"
    s = socks.add(upper_server.connect())
    stream = bytearray()
    got = bytearray()
    for bad in INVALID:
        piece = b"ab" + bad + "é-ß|".encode()
        stream += piece
        s.sendall(piece)
        want = ref_upper(bytes(stream))
        # everything up to the last complete character is answerable; read what the reference says
        got += recv_exact(s, len(want) - len(got), what=f"reply around {bad!r}")
        assert bytes(got) == want, f"after {bad!r}: {bytes(got)!r} != {want!r}"
    assert upper_server.alive(), "server died on invalid UTF-8"


def test_upper_invalid_utf8_split_across_packets(upper_server, socks):
    s = socks.add(upper_server.connect())
    stream = bytearray()
    for bad in INVALID:
        piece = b"q" + bad + "ü".encode() + b"r"
        for i in range(len(piece)):
            s.sendall(piece[i:i + 1])
            time.sleep(0.001)
        stream += piece
    s.shutdown(socket.SHUT_WR)
    got, _how = recv_until_eof(s, 10)
    assert got == ref_upper(bytes(stream)), f"{got!r} != {ref_upper(bytes(stream))!r}"


@pytest.mark.parametrize("tail", [b"\xc3", b"\xe6\x97", b"\xf0\x9f\x98"])
def test_upper_incomplete_char_at_eof(upper_server, tail):
    # "an incomplete character at EOF comes back unchanged"
    data = "grüße ".encode() + tail
    got, how = round_trip(upper_server, data)
    assert got == ref_upper(data) == "GRÜSSE ".encode() + tail, got
    assert how == "eof"


def test_upper_random_chunkings_against_reference(upper_server):
    # "the server sends back exactly data.decode(...).upper().encode(...)" for random streams and chunkings
    alphabet = ["a", "z", "ß", "é", "ŉ", "ﬃ", "ǅ", "\u0131", "i", "ς", "日", "😀", " ", "\n", "ΐ", "ﬀ"]
    for seed in range(6):
        rnd = random.Random(1000 + seed)
        parts = []
        for _ in range(300):
            if rnd.random() < 0.08:
                parts.append(bytes([rnd.choice([0x80, 0xbf, 0xc3, 0xe2, 0xf0, 0xff, 0xed])]))
            else:
                parts.append(rnd.choice(alphabet).encode())
        data = b"".join(parts)
        s = upper_server.connect()
        try:
            i = 0
            while i < len(data):
                n = rnd.randint(1, 9)
                s.sendall(data[i:i + n])
                i += n
                if rnd.random() < 0.2:
                    time.sleep(0.002)
            s.shutdown(socket.SHUT_WR)
            got, _how = recv_until_eof(s, 10)
        finally:
            s.close()
        want = ref_upper(data)
        first_diff = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                          min(len(got), len(want)))
        assert got == want, f"seed {seed}: first difference at byte {first_diff}"


# ---------------------------------------------------------------- streaming


def test_streaming_no_line_buffering_echo(echo_server, socks):
    # "output is streamed: what can be answered is sent without waiting for more input (no line buffering)"
    s = socks.add(echo_server.connect())
    s.sendall(b"no newline here")
    assert recv_exact(s, 15, what="echo of a partial line") == b"no newline here"
    s.sendall(b"x")
    assert recv_exact(s, 1) == b"x"


def test_streaming_no_line_buffering_upper(upper_server, socks):
    s = socks.add(upper_server.connect())
    s.sendall(b"hello ")
    assert recv_exact(s, 6, what="reply to a first chunk") == b"HELLO "
    # the complete part is answered even if a character is still incomplete
    s.sendall(b"x\xc3")
    assert recv_exact(s, 1, what="reply before an incomplete character") == b"X"
    s.sendall(b"\xa9!")
    assert recv_exact(s, 3) == "É!".encode()


# ---------------------------------------------------------------- half-close


@pytest.mark.parametrize("proto", ["echo", "upper"])
def test_half_close_flushes_then_closes(echo_server, upper_server, proto):
    # "client half-close: all pending output is sent, then the connection is closed"
    srv = echo_server if proto == "echo" else upper_server
    data = ("straße " * 40000).encode()  # ~320 KB, sent before reading anything
    s = srv.connect()
    try:
        s.sendall(b"first ")
        recv_exact(s, 6)
        t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)), daemon=True)
        t.start()
        got, how = recv_until_eof(s, 20)
    finally:
        s.close()
    want = data if proto == "echo" else ref_upper(data)
    assert got == want, f"{len(got)} bytes back, expected {len(want)}"
    assert how == "eof"


def test_half_close_connection_can_still_receive_later(echo_server, socks):
    # half-close, read slowly: everything arrives, then EOF
    s = socks.add(echo_server.connect())
    s.sendall(b"abc" * 1000)
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.1)
    got, how = recv_until_eof(s)
    assert got == b"abc" * 1000 and how == "eof"


# ---------------------------------------------------------------- resets


def test_reset_mid_stream_then_canary(echo_server, socks):
    # "client reset or broken pipe: only that connection goes, quietly (debug log), the server carries on"
    s = echo_server.connect()
    try:
        exchange(s, b"before reset")
        s.sendall(b"x" * 200000)  # the server has output pending for us
        time.sleep(0.05)
    finally:
        reset_close(s)
    time.sleep(0.1)
    canary(echo_server)
    assert "Traceback" not in echo_server.stderr(), echo_server.stderr()[-3000:]


def test_reset_while_stalled_then_canary(echo_server):
    s = echo_server.connect()
    try:
        exchange(s, b"warm")
        sender = StalledSender(s, 8 << 20).start()
        sender.wait_stall_or_done(quiet=0.3, timeout=20)
        sender.stop = True
        sender.thread.join(2)
    finally:
        reset_close(s)
    time.sleep(0.1)
    canary(echo_server)
    assert "Traceback" not in echo_server.stderr(), echo_server.stderr()[-3000:]


def test_broken_pipe_then_canary(upper_server):
    # close (with unread reply data) while the server is still sending
    s = upper_server.connect()
    try:
        exchange(s, b"a", b"A")
        s.sendall(b"b" * 500000)
    finally:
        s.close()
    time.sleep(0.1)
    canary(upper_server, "upper")
    assert "Traceback" not in upper_server.stderr(), upper_server.stderr()[-3000:]


def test_reset_does_not_disturb_other_connection(echo_server, socks, model):
    # "only that connection goes"
    if model == "blocking":
        # one client at a time: a second live connection cannot be served alongside; covered by canary tests
        a = None
    else:
        a = socks.add(echo_server.connect())
        exchange(a, b"peer alive")
    r = echo_server.connect()
    try:
        exchange(r, b"doomed")
    finally:
        reset_close(r)
    time.sleep(0.1)
    if a is not None:
        exchange(a, b"peer still alive")
    canary(echo_server)


def test_server_still_alive_and_stdout_clean(echo_server, upper_server):
    # "That is the only line stdout ever carries."
    import select as _select
    for srv in (echo_server, upper_server):
        assert srv.alive(), srv.stderr()[-3000:]
        fd = srv.proc.stdout.fileno()
        r, _, _ = _select.select([fd], [], [], 0.05)
        if r:
            srv.stdout_rest += os.read(fd, 65536)
        assert srv.stdout_rest == b"", f"stdout carried more than the ready line: {srv.stdout_rest!r}"
