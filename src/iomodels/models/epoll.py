"""epoll: readiness notification (Linux).

Waiting for data: one thread blocks in epoll_wait() on the whole interest set;
  the kernel keeps a ready list, filled by callbacks on each socket's wait
  queue, and returns only the ready descriptors: the cost of a wait grows
  with the number of *ready* descriptors, not of watched ones.
Copying it: after an event we recv()/send() on a non-blocking socket; the
  kernel->user copy happens inside that call, on our thread (phase 2 is still
  synchronous: that is what makes this "readiness", not asynchronous, IO).
What to watch when measuring: epoll_ctl() is one syscall per interest change,
  so the loop changes interest only when a write buffer fills or drains;
  with many active connections, events per wakeup grows and the syscall cost
  per request falls (statistics: events_per_wakeup).
Facts that shaped this code:
  - Level-triggered (the default), as selectors.EpollSelector: a descriptor we
    did not fully drain is reported again, so no read is ever lost.
  - EPOLLHUP and EPOLLERR are always reported, even for an empty mask, so an
    fd with no interest is unregistered, not modified to 0 (see _readiness).
  - close() of an fd removes it from the epoll set only when no other copy of
    the file is open (epoll(7), Q6): we always unregister before closing.
  - epoll.poll() returns (fd, mask) with EPOLLIN/EPOLLOUT equal to poll's bits,
    so the loop uses the kernel's masks untranslated.
"""

from __future__ import annotations

import select

from iomodels.models._readiness import Poller, ReadinessServer


class EpollPoller(Poller):
    name = "epoll"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not hasattr(select, "epoll"):
            return False, "select.epoll does not exist on this platform (Linux only)"
        try:  # may fail with ENOSYS under some sandboxes: probe, as selectors._can_use
            select.epoll().close()
        except OSError as exc:
            return False, f"epoll_create: {exc.strerror}"
        return True, ""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.register = self._epoll.register
        self.modify = self._epoll.modify
        self.unregister = self._epoll.unregister
        # epoll.poll(timeout_s or None) already returns [(fd, mask)]: bind it
        # directly, sparing the loop a Python frame per wakeup.
        self.wait = self._epoll.poll

    def register(self, fd: int, events: int) -> None:  # replaced per instance
        self._epoll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._epoll.poll(timeout)

    def close(self) -> None:
        self._epoll.close()


class Server(ReadinessServer):
    name = "epoll"
    poller_class = EpollPoller
