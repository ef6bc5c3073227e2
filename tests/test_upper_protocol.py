"""The upper protocol in-process, against the reference, with any chunking."""

from hypothesis import given, settings
from hypothesis import strategies as st

from iomodels.protocols.upper import UpperProtocol, upper_reference


class Collect:
    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data


def run(chunks: list[bytes]) -> bytes:
    protocol, transport = UpperProtocol(), Collect()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
    protocol.eof_received()
    return bytes(transport.out)


stream = st.lists(st.one_of(st.text(max_size=30).map(str.encode), st.binary(max_size=8)), max_size=10)


@settings(max_examples=400)
@given(parts=stream, data=st.data())
def test_any_chunking_matches_the_reference(parts, data):
    whole = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
    chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    assert run([c for c in chunks if c]) == upper_reference(whole)


def test_examples():
    assert run([b"hello\n", b"stra", "ße\n".encode()]) == b"HELLO\nSTRASSE\n"
    assert run(["straße".encode()[:5], "straße".encode()[5:]]) == b"STRASSE"  # ß split
    assert run([b"\xff"]) == b"\xff"
    assert run([b"a\xe2\x82"]) == b"A\xe2\x82"  # incomplete at EOF: unchanged
