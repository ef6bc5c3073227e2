"""threads: blocking IO, one thread per connection.

Waiting for data: each connection's thread blocks in its own recv(); the
  kernel's scheduler is the multiplexer: it wakes the thread whose socket
  got data.  The main thread blocks in accept().
Copying it: inside that recv(), on the connection's thread.
What to watch when measuring: memory (a thread stack is reserved per
  connection: 8 MiB virtual, a few pages resident, plus the kernel's task),
  thread creation per connection, context switches, and the GIL: only one
  thread runs Python at a time, so CPU-bound protocol work does not scale
  with cores.  The seed: "one thread per connection ... seriously occupies
  system resources" at hundreds or thousands of connections.
Facts that shaped this code:
  - threading.stack_size() is left at the default; RLIMIT_NPROC and
    kernel.threads-max bound the number of connections: a failed
    Thread.start() closes that connection, and the server carries on.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from iomodels.models._blocking import BlockingServer

log = logging.getLogger("iomodels")


class Server(BlockingServer):
    name = "threads"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._threads: set[threading.Thread] = set()

    def _worker(self, sock: socket.socket, peername: Any) -> None:
        try:
            self.serve_connection(sock, peername)
        finally:
            self._threads.discard(threading.current_thread())

    def _spawn(self, sock: socket.socket, peername: Any) -> None:
        thread = threading.Thread(
            target=self._worker, args=(sock, peername), name=f"conn-{peername}", daemon=True
        )
        self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread"
            self._threads.discard(thread)
            log.warning("cannot start a thread for %s: %s; closing it", peername, exc)
            sock.close()

    def run(self) -> None:
        self.accept_loop(self._spawn, count_active=lambda: len(self._threads))
        self.join_threads(list(self._threads))
