"""upper: the reference function over the whole stream, whatever the chunking."""

import codecs
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iomodels.protocols.upper import upper_reference

from helpers import recv_exactly, send_and_drain

pytestmark = pytest.mark.timeout(180)

SAMPLE = "hello straße é ǅ ﬁ Ωμέγα 日本語 😀 i̇ ß".encode()


def test_reference_examples(upper_server):
    assert upper_server.exchange(b"hello\nstra\xc3\x9fe\n") == b"HELLO\nSTRASSE\n"
    assert upper_server.exchange("é".encode()) == "É".encode()
    assert upper_server.exchange(SAMPLE) == upper_reference(SAMPLE)


def test_invalid_utf8_passes_through(upper_server):
    data = b"ab\xff\xfecd\xc3(\xed\xa0\x80z"
    assert upper_server.exchange(data) == upper_reference(data)
    assert upper_server.exchange(data).startswith(b"AB\xff\xfeCD\xc3(")


def test_incomplete_character_at_eof(upper_server):
    for data in (b"abc\xe6\x97", b"\xf0\x9f\x98", b"x\xc3"):
        assert upper_server.exchange(data) == upper_reference(data)
        assert upper_server.exchange(data).endswith(data[-1:])


def test_split_at_every_offset(upper_server):
    """Each split point, with the first part answered before the second is sent."""
    for offset in range(1, len(SAMPLE)):
        first, second = SAMPLE[:offset], SAMPLE[offset:]
        decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        answer_first = decoder.decode(first).upper().encode("utf-8", "surrogateescape")
        with upper_server.connect() as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(first)
            if answer_first:
                assert recv_exactly(sock, len(answer_first)) == answer_first, offset
            else:
                time.sleep(0.01)  # only part of one character: nothing can be answered yet
            rest = send_and_drain(sock, second)
        assert answer_first + rest == upper_reference(SAMPLE), offset


chunks = st.lists(
    st.one_of(st.text(max_size=40).map(lambda s: s.encode()), st.binary(max_size=20)),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(parts=chunks)
def test_random_chunkings(upper_server, parts):
    data = b"".join(parts)
    with upper_server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = bytearray()
        for part in parts:
            sock.sendall(part)
            time.sleep(0.001)  # let most parts arrive as separate segments
        received += send_and_drain(sock, b"")
    assert bytes(received) == upper_reference(data)
