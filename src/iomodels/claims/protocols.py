"""Protocols for the claims' experiments (``--protocol iomodels.claims.protocols:Burn``)."""

from __future__ import annotations

import time

from iomodels.core.protocol import Protocol

HEAVY = b"HEAVY"  # a chunk starting with this costs BURN_S of CPU before its echo
BURN_S = 0.050  # 50 ms of CPU, the claim's "large response body"


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU in Python (holds the GIL between switches)."""
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for _ in range(1000):
            x += 1


class Burn(Protocol):
    """echo, except that a chunk starting with ``HEAVY`` first burns BURN_S of CPU.

    The heavy work runs inside ``data_received``, where every model calls it:
    on a readiness loop that is the loop's only thread (the seed's "mixing
    detecting events and responding to them").  Light requests never start
    with HEAVY (the load generator sends lower-case ASCII)."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if data.startswith(HEAVY):
            burn(BURN_S)
        self.transport.write(data)


class BurnOffloaded(Burn):
    """Burn, with the heavy work handed to the server's worker pool
    (transport.run_in_worker): the loop goes on serving light requests, and
    the reply is written back on the loop when the work is done."""

    def data_received(self, data: bytes) -> None:
        if data.startswith(HEAVY):
            self.transport.run_in_worker(burn, BURN_S, done=lambda _future: self.transport.write(data))
            return
        self.transport.write(data)
