"""poll: readiness notification (POSIX).

Waiting for data: one thread blocks in poll() with an array of every watched
  descriptor; the kernel walks the whole array on every call (and registers
  on, then unregisters from, each socket's wait queue), and so does user
  space to find the ready ones: the cost of a wait grows with the number of
  *watched* descriptors, even idle ones.
Copying it: as epoll: recv()/send() on a non-blocking socket after an event;
  the copy happens inside that call, on our thread.
What to watch when measuring: CPU per request against idle connections; no
  descriptor-number limit (unlike select), only RLIMIT_NOFILE.
Facts that shaped this code:
  - select.poll keeps its own fd -> mask dict and rebuilds the pollfd array
    only when it changes (Modules/selectmodule.c, ufd_uptodate).
  - POLLHUP, POLLERR and POLLNVAL are always reported; an fd with no interest
    is unregistered (see _readiness).
  - poll() takes milliseconds; a positive timeout below 1 ms is rounded up so
    a due timer does not turn into a busy loop of poll(0).
"""

from __future__ import annotations

import math
import select

from iomodels.models._readiness import Poller, ReadinessServer


class PollPoller(Poller):
    name = "poll"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not hasattr(select, "poll"):
            return False, "select.poll does not exist on this platform"
        select.poll()
        return True, ""

    def __init__(self) -> None:
        self._poll = select.poll()
        self.register = self._poll.register
        self.modify = self._poll.modify
        self.unregister = self._poll.unregister

    def register(self, fd: int, events: int) -> None:  # replaced per instance
        self._poll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._poll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self._poll.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is None:
            return self._poll.poll()
        return self._poll.poll(math.ceil(timeout * 1000))


class Server(ReadinessServer):
    name = "poll"
    poller_class = PollPoller
