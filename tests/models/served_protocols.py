"""Protocols for tests/models/test_idle_timeout.py and
tests/conformance/test_stop_budget.py, loaded by the server under test as
``--protocol models.served_protocols:NAME`` (tests/ is on its PYTHONPATH,
see helpers.Server)."""

from __future__ import annotations

import logging
import threading
import time

from iomodels.protocols.echo import EchoProtocol

log = logging.getLogger("iomodels")


class IdleHalfSecond(EchoProtocol):
    """An echo whose connection closes after 0.5 s without progress; says
    in the log what connection_lost was given."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        transport.set_idle_timeout(0.5)

    def connection_lost(self, exc: BaseException | None) -> None:
        log.info("idle-test lost: %s", type(exc).__name__)
        super().connection_lost(exc)


class IdleUntilData(IdleHalfSecond):
    """0.5 s until the first byte, then the server's default again."""

    def data_received(self, data: bytes) -> None:
        self.transport.set_idle_timeout(None)
        super().data_received(data)


class LongJob(EchoProtocol):
    """Hands a 60 s job to the offload workers at the first byte, and echoes
    that first batch; later batches are answered ``y`` once the job runs on a
    worker (it may still wait in the pool's queue), else ``n``."""

    def data_received(self, data: bytes) -> None:
        if not getattr(self, "started", False):
            self.started = True
            self.running = threading.Event()
            self.transport.run_in_worker(self._job)
            super().data_received(data)
            return
        self.transport.write(b"y" if self.running.is_set() else b"n")

    def _job(self) -> None:
        self.running.set()
        time.sleep(60)
