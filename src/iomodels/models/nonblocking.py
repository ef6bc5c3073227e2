"""nonblocking: the seed's busy-polling loop over non-blocking sockets.

Waiting for data: nobody waits.  The loop asks every socket again and again,
  accept() on the listener and recv() on each connection, and the kernel
  answers EAGAIN at once when nothing is there ("polling" in the seed).  This
  model burns a whole CPU even with no traffic, by design: that is the
  seed's claim to measure, so the cost is not hidden.
Copying it: the recv() that finds data copies it, kernel -> user, on our
  thread, as in every readiness model.
What to watch when measuring: idle CPU (a full core), and CPU per request
  growing with the number of connections, since each sweep makes one recv()
  syscall per connection.  The seed's remedy, time.sleep() between sweeps,
  is ``--poll-interval`` here: it trades the CPU for latency.
Facts that shaped this code:
  - It is the readiness loop (_readiness) with a "poller" that asks the
    kernel nothing: wait() returns every registered fd with its interest, so
    the loop tries recv()/send()/accept() on each and takes EAGAIN as "not
    ready".  The accept/transport/flow-control code is the same as epoll's,
    so the comparison isolates how the models wait.
  - Signals still stop it promptly: the loop polls the wakeup socket too.
"""

from __future__ import annotations

import time

from iomodels.models._readiness import Poller, ReadinessServer


class BusyPoller(Poller):
    name = "nonblocking"

    def __init__(self, interval_s: float = 0.0) -> None:
        self._interest: dict[int, int] = {}
        self._interval_s = interval_s

    def register(self, fd: int, events: int) -> None:
        self._interest[fd] = events

    def modify(self, fd: int, events: int) -> None:
        self._interest[fd] = events

    def unregister(self, fd: int) -> None:
        self._interest.pop(fd, None)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        # Ignore the timeout: never block.  Every fd is "maybe ready".
        if self._interval_s:
            time.sleep(self._interval_s)
        return list(self._interest.items())


class Server(ReadinessServer):
    name = "nonblocking"
    poller_class = BusyPoller

    def make_poller(self) -> Poller:
        return BusyPoller(self.config.poll_interval_s)
