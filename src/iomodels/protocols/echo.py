"""echo: every byte comes back unchanged, in order."""

from __future__ import annotations

from iomodels.core.protocol import Protocol


class EchoProtocol(Protocol):
    __slots__ = ("transport", "_write")

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._write = transport.write  # bound once: this is the hot path

    def data_received(self, data: bytes) -> None:
        self._write(data)
