"""uvloop: the same protocol objects on uvloop (libuv in Cython), as a peer.

Waiting for data: libuv's loop blocks in epoll_wait() (uv__io_poll in
  src/unix/linux.c), in C.
Copying it: libuv reads into a 256 KiB buffer of its own on the loop's
  thread and uvloop hands a bytes copy to data_received().
What to watch when measuring: the same kernel wait as our epoll model with
  the dispatch in C: the difference is the cost of our loop being Python.
Facts that shaped this code:
  - Everything but the loop is the asyncio model (asyncio.py): the same
    wrapper protocol, limits and graceful stop.
  - uvloop is optional (``pip install 'iomodels[uvloop]'``); when it is not
    importable the model is unavailable with that reason.
"""

from __future__ import annotations

import asyncio

from iomodels.models.asyncio import Server as AsyncioServer


class Server(AsyncioServer):
    name = "uvloop"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return False, "uvloop is not installed (pip install 'iomodels[uvloop]')"
        return True, ""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        import uvloop

        return uvloop.new_event_loop()
