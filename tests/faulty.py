"""Protocols that misbehave on purpose, loaded by the server with
``--protocol faulty:Raising`` (tests put this directory on PYTHONPATH)."""

from iomodels.core.protocol import Protocol


class Raising(Protocol):
    """Echoes, but raises on a chunk containing b"boom"."""

    def data_received(self, data: bytes) -> None:
        if b"boom" in data:
            raise RuntimeError("boom requested by the test")
        self.transport.write(data)


class Recording(Protocol):
    """Echoes, and logs its callback sequence at connection_lost, e.g.
    ``recording: CM DR DR ER CL``, so a test can check the state machine
    start -> CM [-> DR*] [-> ER?] -> CL -> end on every model."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def connection_made(self, transport) -> None:
        self.calls.append("CM")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.calls.append("DR")
        self.transport.write(data)

    def eof_received(self) -> None:
        self.calls.append("ER")

    def connection_lost(self, exc) -> None:
        import logging

        self.calls.append("CL")
        logging.getLogger("iomodels").info("recording: %s", " ".join(self.calls))


class Offloading(Protocol):
    """``sleep:S`` runs time.sleep(S) through transport.run_in_worker, then
    replies ``slept:S``; ``boom`` makes the worker raise, and the reply is
    ``failed:<error>``; anything else is echoed at once."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        import time

        if data.startswith(b"sleep:"):
            seconds = float(data[6:].decode())
            self.transport.run_in_worker(time.sleep, seconds, done=lambda f: self._slept(f, data[6:]))
        elif data.startswith(b"boom"):
            self.transport.run_in_worker(_raise, done=self._failed)
        else:
            self.transport.write(data)

    def _slept(self, future, arg: bytes) -> None:
        future.result()
        self.transport.write(b"slept:" + arg)

    def _failed(self, future) -> None:
        self.transport.write(f"failed:{future.exception()}".encode())


def _raise() -> None:
    raise ValueError("raised in a worker")
