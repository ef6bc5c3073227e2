"""upper: the seed's protocol made correct.

The bytes of a connection are one UTF-8 stream and the reply is exactly

    data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")

streamed as it arrives.  The seed did ``conn.recv(1024).decode("utf-8")``,
which raises on a character split across two recv()s and kills the server on
one invalid byte.  Here an incremental decoder keeps the partial character
for the next chunk; surrogateescape carries bytes that are not UTF-8 through
unchanged; an incomplete character left at EOF comes back unchanged.

str.upper() maps one character at a time (full case mapping, "ß" -> "SS",
without context: only lower() looks at context, for final sigma), so
upper-casing chunk by chunk at character boundaries equals upper-casing the
whole stream.  The Unicode tables are those of the Python running the server.
"""

from __future__ import annotations

import codecs

from iomodels.core.protocol import Protocol

_Decoder = codecs.getincrementaldecoder("utf-8")


def upper_reference(data: bytes) -> bytes:
    """The contract, applied to a whole stream at once (tests use it)."""
    return data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


class UpperCaser:
    """The streaming rule, without IO: ``feed(chunk)`` and ``finish()`` return
    the upper-cased bytes that can go out now.  UpperProtocol and the http
    protocol's ``POST /upper`` both use it."""

    __slots__ = ("_decoder", "_clean")

    def __init__(self) -> None:
        self._decoder = _Decoder("surrogateescape")
        self._clean = True  # the decoder holds no partial character

    def feed(self, data: bytes) -> bytes:
        # Fast path: ASCII with no partial character pending.  bytes.upper()
        # maps exactly a-z, which is what the full path does to ASCII.
        if self._clean and data.isascii():
            return data.upper()
        text = self._decoder.decode(data)
        self._clean = not self._decoder.getstate()[0]
        return text.upper().encode("utf-8", "surrogateescape") if text else b""

    def finish(self) -> bytes:
        """What an incomplete character left at the end becomes: itself."""
        tail = self._decoder.decode(b"", final=True)
        self._clean = True
        return tail.upper().encode("utf-8", "surrogateescape") if tail else b""


class UpperProtocol(Protocol):
    __slots__ = ("transport", "_write", "_upper")

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._write = transport.write
        self._upper = UpperCaser()

    def data_received(self, data: bytes) -> None:
        upper = self._upper
        if upper._clean and data.isascii():  # feed()'s fast path, without the call
            self._write(data.upper())
            return
        out = upper.feed(data)
        if out:
            self._write(out)

    def eof_received(self) -> None:
        tail = self._upper.finish()
        if tail:
            self._write(tail)
        return None
