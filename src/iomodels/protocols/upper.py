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


class UpperProtocol(Protocol):
    __slots__ = ("transport", "_write", "_decoder", "_clean")

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._write = transport.write
        self._decoder = _Decoder("surrogateescape")
        self._clean = True  # the decoder holds no partial character

    def data_received(self, data: bytes) -> None:
        # Fast path: ASCII with no partial character pending.  bytes.upper()
        # maps exactly a-z, which is what the full path does to ASCII.
        if self._clean and data.isascii():
            self._write(data.upper())
            return
        text = self._decoder.decode(data)
        self._clean = not self._decoder.getstate()[0]
        if text:
            self._write(text.upper().encode("utf-8", "surrogateescape"))

    def eof_received(self) -> None:
        tail = self._decoder.decode(b"", final=True)
        self._clean = True
        if tail:
            self._write(tail.upper().encode("utf-8", "surrogateescape"))
        return None
