"""Fuzz ``--protocol http`` on every model with generated and mutated requests.

The invariant (h11's afl-server: "parse it, or else throw a
RemoteProtocolError, never any other error"), seen from a client: whatever we
send, the server answers with zero or more valid HTTP/1.1 responses and
closes (the last one may be cut short only if its body was being streamed);
it never hangs, never crashes, and still answers a fresh client afterwards.

Bounded for CI: IOMODELS_HTTP_FUZZ_EXAMPLES per model (default 200); set it
to thousands for a real campaign.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import get, read_responses, split_response

from helpers import Server, model_params

EXAMPLES = int(os.environ.get("IOMODELS_HTTP_FUZZ_EXAMPLES", "200"))
IO_DEADLINE_S = 8.0

SEEDS = [
    b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /upper HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\xc3\xa9x\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
]

methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"G", b"get", b""])
paths = st.sampled_from([b"/", b"/plaintext", b"/json", b"/echo", b"/upper", b"/health", b"/x?y=1", b"*"]) | (
    st.binary(max_size=20)
)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1", b""])
header_names = st.sampled_from(
    [b"Host", b"Content-Length", b"Transfer-Encoding", b"Expect", b"Connection", b"Upgrade", b"Bad Name"]
)
header_values = st.sampled_from(
    [b"chunked", b"gzip", b"5", b"-1", b"100-continue", b"close", b"keep-alive", b"0", b"9" * 20]
) | st.binary(max_size=12)
headers = st.lists(st.tuples(header_names, header_values), max_size=6)
bodies = st.binary(max_size=64)


@st.composite
def generated(draw) -> bytes:
    head = draw(methods) + b" " + draw(paths) + b" " + draw(versions) + b"\r\n"
    for name, value in draw(headers):
        head += name + b": " + value + b"\r\n"
    return head + b"\r\n" + draw(bodies)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "duplicate":
            data[i:i] = data[i : i + draw(st.integers(1, 16))]
        else:
            del data[i:]
    return bytes(data)


@pytest.fixture(scope="module", params=model_params())
def fuzz_server(request):
    with Server(request.param, "--header-timeout", "3", "--threads", "16", protocol="http") as server:
        yield server


def exchange(server: Server, data: bytes) -> bytes:
    """Send ``data``, half-close, read to EOF; fail on a hang."""
    with socket.create_connection((server.host, server.port), timeout=IO_DEADLINE_S) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: allowed
        received = b""
        deadline = time.monotonic() + IO_DEADLINE_S
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no close within {IO_DEADLINE_S}s; got {received[:200]!r}"
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


def check_answer(data: bytes) -> None:
    """Valid responses, then at most the cut-short start of one more."""
    while data:
        parsed = split_response(data, at_eof=True)
        if parsed is None:  # incomplete: its head must still be a valid one
            head, sep, _ = data.partition(b"\r\n\r\n")
            assert sep, f"a response cut inside its head: {data[:200]!r}"
            split_response(head + b"\r\n\r\n", head_only=True)
            return
        data = parsed[1]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=generated() | mutated())
def test_fuzz_never_crashes_or_hangs(fuzz_server: Server, data: bytes) -> None:
    check_answer(exchange(fuzz_server, data))


def test_server_still_answers_after_the_fuzz(fuzz_server: Server) -> None:
    with socket.create_connection((fuzz_server.host, fuzz_server.port), timeout=10) as sock:
        sock.sendall(get(b"/plaintext"))
        assert read_responses(sock, 1)[0].body == b"Hello, World!"
    assert "Traceback" not in fuzz_server.stderr()


# ---- the same invariant without sockets, cut at every kind of boundary


@settings(max_examples=EXAMPLES * 5, deadline=None, database=None)
@given(data=generated() | mutated(), cuts=st.lists(st.integers(1, 64), max_size=20), eof=st.booleans())
def test_fuzz_protocol_over_a_fake_transport(data: bytes, cuts: list[int], eof: bool) -> None:
    """Any bytes, cut anywhere: the protocol raises nothing and writes only
    valid responses; once it closes it writes nothing more."""
    from fake import FakeTransport

    from iomodels.protocols.http import HttpProtocol

    proto = HttpProtocol()
    transport = FakeTransport()
    transport.protocol = proto
    proto.connection_made(transport)
    pos = 0
    for cut in [*cuts, len(data)]:
        if pos >= len(data) or transport.closed:
            break
        proto.data_received(data[pos : pos + cut])
        pos += cut
    if eof and not transport.closed:
        proto.eof_received()
    check_answer(bytes(transport.written))
