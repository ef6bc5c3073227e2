"""aio: the same protocol objects on iomodels.aio, an asyncio event loop on io_uring.

Waiting for data: one io_uring_enter per loop turn submits every queued
  operation and waits for a completion, up to the next timer; the loop is
  CPython's proactor loop (BaseProactorEventLoop) over a UringProactor
  (src/iomodels/aio/, docs/aio.md).
Copying it: each socket transport keeps one RECV in flight; the kernel copies
  the data into the transport's buffer before we hear of it, and the transport
  re-arms the read before handing the bytes to data_received().  Writes try a
  non-blocking send first; only the rest becomes a SEND operation.
What to watch when measuring: the same completion model as the io_uring
  model, but through asyncio's public API and CPython's proactor transports
  (Python), not our own transports on the ring's fast paths: it sits between
  asyncio's default loop and uvloop (docs/aio.md has the figures).
Facts that shaped this code:
  - Everything but the loop is the asyncio model (asyncio.py): the same
    wrapper protocol, limits and graceful stop, as uvloop.py does.
  - Where io_uring cannot be used, the model is unavailable with the reason
    iomodels.aio.available() gives (sysctl, seccomp, a missing operation).
"""

from __future__ import annotations

import asyncio

from iomodels.models.asyncio import Server as AsyncioServer


class Server(AsyncioServer):
    name = "aio"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        from iomodels import aio

        return aio.available()

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        from iomodels import aio

        return aio.new_event_loop()
