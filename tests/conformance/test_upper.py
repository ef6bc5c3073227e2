"""upper: the reference function over the whole stream, whatever the chunking."""

import codecs
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iomodels.protocols.upper import upper_reference

from helpers import recv_exactly, roundtrip, send_and_drain

pytestmark = pytest.mark.timeout(180)

SAMPLE = "hello straße é ǅ ﬁ Ωμέγα 日本語 😀 i̇ ß".encode()


def test_reference_examples(upper_server):
    assert upper_server.exchange(b"hello\nstra\xc3\x9fe\n") == b"HELLO\nSTRASSE\n"
    assert upper_server.exchange("é".encode()) == "É".encode()
    assert upper_server.exchange(SAMPLE) == upper_reference(SAMPLE)


INVALID = [
    b"\xff",
    b"\xfe\xfe",
    b"\xc3(",  # a lead byte, then ASCII
    b"\xe6\x97x",  # a truncated 3-byte sequence, then ASCII
    b"\xc0\xaf",  # overlong
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\x80\x80abc",  # stray continuation bytes
    b"\xf0\x9f\x98",  # a truncated 4-byte sequence, then more text
]


def test_invalid_utf8_passes_through(upper_server):
    data = b"ab\xff\xfecd\xc3(\xed\xa0\x80z"
    assert upper_server.exchange(data) == upper_reference(data)
    assert upper_server.exchange(data).startswith(b"AB\xff\xfeCD\xc3(")
    # Each kind of invalid sequence between valid text, on one connection:
    # all that the reference can answer so far comes back before more is sent.
    with upper_server.connect() as sock:
        stream, got = bytearray(), bytearray()
        for bad in INVALID:
            piece = b"ab" + bad + "é-ß|".encode()
            stream += piece
            sock.sendall(piece)
            want = upper_reference(bytes(stream))
            got += recv_exactly(sock, len(want) - len(got), what=f"reply around {bad!r}")
            assert bytes(got) == want, f"after {bad!r}"


def test_invalid_utf8_byte_by_byte(upper_server):
    stream = b"".join(b"q" + bad + "ü".encode() + b"r" for bad in INVALID)
    with upper_server.connect() as sock:
        for i in range(len(stream)):
            sock.sendall(stream[i : i + 1])
            time.sleep(0.001)  # most bytes arrive as segments of their own
        got = send_and_drain(sock, b"")
    assert got == upper_reference(stream)


def test_split_at_every_offset(upper_server):
    """Each split point, with the first part answered before the second is sent."""
    for offset in range(1, len(SAMPLE)):
        first, second = SAMPLE[:offset], SAMPLE[offset:]
        decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        answer_first = decoder.decode(first).upper().encode("utf-8", "surrogateescape")
        with upper_server.connect() as sock:
            sock.sendall(first)
            if answer_first:
                assert recv_exactly(sock, len(answer_first)) == answer_first, offset
            else:
                time.sleep(0.01)  # only part of one character: nothing can be answered yet
            rest = send_and_drain(sock, second)
        assert answer_first + rest == upper_reference(SAMPLE), offset


# Characters whose upper case is longer (ß, ŉ, ﬃ, ΐ), titlecase ones (ǅ), the
# dotless i, final sigma, and lone bytes that are never valid UTF-8 alone.
TRICKY = st.sampled_from(["ß", "é", "ŉ", "ﬃ", "ǅ", "\u0131", "ς", "日", "😀", "ΐ", "ﬀ", "\n"])
chunks = st.lists(
    st.one_of(
        st.text(max_size=40).map(lambda s: s.encode()),
        st.lists(TRICKY, max_size=8).map(lambda s: "".join(s).encode()),
        st.binary(max_size=20),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(parts=chunks)
def test_random_chunkings(upper_server, parts):
    data = b"".join(parts)
    with upper_server.connect() as sock:
        received = bytearray()
        for part in parts:
            sock.sendall(part)
            time.sleep(0.001)  # let most parts arrive as separate segments
        received += send_and_drain(sock, b"")
    assert bytes(received) == upper_reference(data)


def test_clients_served_at_once(upper_server):
    """Every model but ``blocking`` serves several open connections at once,
    each getting its own replies while the others wait."""
    if upper_server.model == "blocking":
        pytest.skip("blocking serves one client at a time (test_limits checks that it does)")
    clients = [upper_server.connect() for _ in range(6)]
    try:
        for i, sock in enumerate(reversed(clients)):
            roundtrip(sock, b"c%d\n" % i, b"C%d\n" % i)
        for i, sock in enumerate(clients):
            roundtrip(sock, "ß%d".encode() % i, b"SS%d" % i)
    finally:
        for sock in clients:
            sock.close()
