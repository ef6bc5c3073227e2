"""A protocol for tests/models/test_sendfile_transport.py, loaded by the
server under test as ``--protocol models.sendfile_protocols:FileBetweenWrites``
(tests/ is on its PYTHONPATH, see helpers.Server)."""

from __future__ import annotations

import logging
import socket

from iomodels.core.protocol import Protocol

log = logging.getLogger("iomodels")


class FileBetweenWrites(Protocol):
    """The client sends a file's path and a newline; the reply is b"before|",
    the file (transport.sendfile), b"|during" written right after the call
    (where the contract queues it behind the file: not on the asyncio-shaped
    models, which refuse writes until done), and b"|after" from done, then
    the close.  The log says what done got."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.line = b""

    def data_received(self, data: bytes) -> None:
        self.line += data
        if not self.line.endswith(b"\n"):
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # a small send buffer: many rounds of "full, wait for room"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        self.file = open(self.line.decode().strip(), "rb")  # noqa: SIM115 - closed in done
        self.transport.write(b"before|")
        self.transport.sendfile(self.file, done=self.done)
        if not hasattr(self.transport, "sendfile_native"):  # asyncio's proxy has it
            self.transport.write(b"|during")

    def done(self, future) -> None:
        try:
            log.info("sendfile-test done: %d", future.result())
        except Exception as exc:
            log.info("sendfile-test failed: %s", type(exc).__name__)
        self.file.close()
        if self.transport is not None:
            self.transport.write(b"|after")
            self.transport.close()
