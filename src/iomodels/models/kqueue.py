"""kqueue: readiness notification (FreeBSD, macOS, the other BSDs).

Waiting for data: one thread blocks in kevent(); like epoll, the kernel keeps
  the interest set and returns only the ready events, one per (fd, filter):
  a descriptor readable and writable comes back as two events.
Copying it: as epoll: recv()/send() on a non-blocking socket after an event.
What to watch when measuring: interest changes are kevent() calls too; kqueue
  could batch them into the next wait's changelist (we do not, to keep the
  Poller interface the same as the others).
Facts that shaped this code:
  - Not available on Linux: select.kqueue does not exist there, so this model
    is skipped with that reason on this project's CI; it is kept working and
    reviewed against CPython's selectors.KqueueSelector, which it mirrors.
  - EV_EOF on the read filter means the peer half-closed: reported as
    readable, recv() then returns b"".  EV_ERROR is reported as both sides.
"""

from __future__ import annotations

import select

from iomodels.models._readiness import ERROR, READ, WRITE, Poller, ReadinessServer


class KqueuePoller(Poller):
    name = "kqueue"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not hasattr(select, "kqueue"):
            return False, "select.kqueue does not exist on this platform (BSD and macOS only)"
        try:
            select.kqueue().close()
        except OSError as exc:
            return False, f"kqueue: {exc.strerror}"
        return True, ""

    def __init__(self) -> None:
        self._kqueue = select.kqueue()
        self._interest: dict[int, int] = {}

    def _change(self, fd: int, old: int, new: int) -> None:
        changes = []
        for bit, kfilter in ((READ, select.KQ_FILTER_READ), (WRITE, select.KQ_FILTER_WRITE)):
            if new & bit and not old & bit:
                changes.append(select.kevent(fd, kfilter, select.KQ_EV_ADD))
            elif old & bit and not new & bit:
                changes.append(select.kevent(fd, kfilter, select.KQ_EV_DELETE))
        if changes:
            self._kqueue.control(changes, 0, 0)
        if new:
            self._interest[fd] = new
        else:
            self._interest.pop(fd, None)

    def register(self, fd: int, events: int) -> None:
        self._change(fd, 0, events)

    def modify(self, fd: int, events: int) -> None:
        self._change(fd, self._interest.get(fd, 0), events)

    def unregister(self, fd: int) -> None:
        self._change(fd, self._interest.get(fd, 0), 0)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        # Up to two events per fd (read and write filters), as KqueueSelector.
        max_events = max(2 * len(self._interest), 1)
        ready = []
        for kev in self._kqueue.control(None, max_events, timeout):
            mask = READ if kev.filter == select.KQ_FILTER_READ else WRITE
            if kev.flags & select.KQ_EV_ERROR:
                mask |= ERROR
            ready.append((kev.ident, mask))
        return ready

    def close(self) -> None:
        self._kqueue.close()


class Server(ReadinessServer):
    name = "kqueue"
    poller_class = KqueuePoller
