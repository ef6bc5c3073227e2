"""select: readiness notification, the oldest interface (POSIX, 4.2BSD).

Waiting for data: one thread blocks in select() with three bitmaps (read,
  write, except) of FD_SETSIZE bits; the kernel scans every bit up to the
  highest descriptor, and overwrites the bitmaps with the ready ones, so they
  are rebuilt from our sets before every call.  Cost per wait grows with the
  highest watched descriptor number.
Copying it: as epoll: recv()/send() on a non-blocking socket after an event.
What to watch when measuring: the per-wait cost with many idle connections;
  and the limit: a descriptor *number* >= FD_SETSIZE cannot be watched at
  all.  The seed says "select is limited to 1024 on 32-bit machines and 2048
  on 64-bit"; glibc's FD_SETSIZE is 1024 on both, and it bounds the fd
  number, not how many fds are watched.
Facts that shaped this code:
  - CPython's select.select() raises ValueError for an fd >= FD_SETSIZE
    (Modules/selectmodule.c, seq2set): we check before registering, close that
    connection right after accept with one warning, keep serving the others,
    and accept again when descriptors free up (see _readiness._accepted).
  - Errors and hang-ups show up as readable or writable: recv()/send() then
    report them.
"""

from __future__ import annotations

import select

from iomodels.core.errors import DescriptorTooLarge
from iomodels.models._readiness import READ, WRITE, Poller, ReadinessServer

FD_SETSIZE = 1024  # glibc's <sys/select.h>, on 32- and 64-bit alike


class SelectPoller(Poller):
    name = "select"
    max_fd = FD_SETSIZE

    def __init__(self) -> None:
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    def register(self, fd: int, events: int) -> None:
        if fd >= FD_SETSIZE:
            raise DescriptorTooLarge(f"select cannot watch fd {fd} >= FD_SETSIZE {FD_SETSIZE}")
        if events & READ:
            self._readers.add(fd)
        if events & WRITE:
            self._writers.add(fd)

    def modify(self, fd: int, events: int) -> None:
        self.unregister(fd)
        self.register(fd, events)

    def unregister(self, fd: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        readable, writable, _ = select.select(self._readers, self._writers, (), timeout)
        if writable:
            return [(fd, READ) for fd in readable] + [(fd, WRITE) for fd in writable]
        return [(fd, READ) for fd in readable]


class Server(ReadinessServer):
    name = "select"
    poller_class = SelectPoller
