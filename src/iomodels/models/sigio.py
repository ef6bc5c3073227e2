"""sigio: signal-driven IO (Linux: F_SETSIG + a realtime signal, read through signalfd).

Waiting for data: each socket is armed (fcntl F_SETOWN to us, F_SETSIG to a
  realtime signal, O_ASYNC): when data arrives, or send space frees up after a
  send found none, the kernel queues a signal whose siginfo carries the
  descriptor (si_fd) and the event (si_band: POLLIN, POLLOUT, ...).  The
  signals are blocked, so nothing interrupts us: the loop reads them as
  records from a signalfd, every queued record per wake-up, in one read().
Copying it: as in every readiness model, recv()/send() on a non-blocking
  socket after the notification; the copy happens inside that call.
What to watch when measuring: one read() returns a batch of records, so the
  wait costs about what epoll_wait() does; but the kernel queues one record
  per *arrival* (a TCP segment), not one per ready socket, so a busy
  connection produces several records per request: we de-duplicate per batch.
  The seed calls this model "rarely used in practice"; measure it against epoll.
Facts that shaped this code (Linux fcntl(2), signal(7), signalfd(2)):
  - Block the signals *before* arming anything: SIGIO's default action
    terminates the process, and a realtime signal's too.
  - Notification is edge-triggered: a signal per arrival, none while data
    merely remains.  So a socket is reported once at registration (data that
    arrived before it was armed raised no signal: accepted sockets do not
    inherit the arming), once when interest grows (a resumed reader, a writer
    with pending output), again whenever a recv() filled the whole buffer
    (more may be waiting: Connection asks us via ``maybe_more``), and again
    when one batch held two records for one socket: data and then the peer's
    FIN are two arrivals, but one recv() returns only the data.
  - A realtime signal queue has a limit (RLIMIT_SIGPENDING).  When it is
    full the kernel sends plain SIGIO, which carries no descriptor: records
    were lost, so we rescan every registered socket once.
  - A record can outlive its socket: the fd may be closed, or even reused by a
    newer connection, by the time we read it.  Records are filtered by the
    current interest set; a stale one costs at most one EAGAIN.
  - SIGINT/SIGTERM are blocked and read from the same signalfd, then handed
    to the Python handler the server installed; timers are SIGALRM
    (setitimer) through the same signalfd: the loop has one wait, read().
  - The classic variant (``--sigio-classic``, what the seed describes) uses
    plain SIGIO with no F_SETSIG: the signal says "something happened" but not
    where, so every wake-up rescans every socket.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import struct
import sys

from iomodels.core.server import RECV_SIZE
from iomodels.models._readiness import ERROR, READ, WRITE, Connection, Poller, ReadinessServer

log = logging.getLogger("iomodels")

SIGNAL_RT = signal.SIGRTMIN  # the realtime signal the sockets raise (F_SETSIG)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RECORD = struct.Struct("<IiiIIiII")  # struct signalfd_siginfo: signo errno code pid uid fd tid band
_RECORD_SIZE = 128  # sizeof(struct signalfd_siginfo)
_BATCH = 256  # records per read()
_SFD_NONBLOCK = os.O_NONBLOCK
_SFD_CLOEXEC = os.O_CLOEXEC
_SIGSET_BYTES = 128  # glibc's sigset_t
_BAND_MASK = READ | WRITE | ERROR


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _sigset(signals: tuple[int, ...]) -> ctypes.Array:
    words = [0] * (_SIGSET_BYTES // 8)
    for signum in signals:
        words[(signum - 1) // 64] |= 1 << ((signum - 1) % 64)
    return (ctypes.c_uint64 * len(words))(*words)


def _signalfd(libc: ctypes.CDLL, signals: tuple[int, ...], flags: int) -> int:
    fd = libc.signalfd(-1, _sigset(signals), flags)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"signalfd: {os.strerror(err)}")
    return fd


class SigioPoller(Poller):
    name = "sigio"
    edge_triggered = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not sys.platform.startswith("linux"):
            return False, "needs Linux (F_SETSIG and signalfd)"
        if not hasattr(fcntl, "F_SETSIG"):
            return False, "fcntl.F_SETSIG is missing"
        try:
            libc = _libc()
            os.close(_signalfd(libc, (SIGNAL_RT,), _SFD_NONBLOCK | _SFD_CLOEXEC))
        except (OSError, AttributeError) as exc:
            return False, f"signalfd unavailable: {exc}"
        return True, ""

    def __init__(self, classic: bool = False) -> None:
        self._classic = classic
        self._io_signal = signal.SIGIO if classic else SIGNAL_RT
        self._interest: dict[int, int] = {}
        self._pending: dict[int, int] = {}  # synthetic events for the next wait
        self.drain_fds: set[int] = set()  # sockets to read until EAGAIN (see wait)
        self._owner = os.getpid()
        self._timer_armed = False
        watched = (self._io_signal, signal.SIGIO, signal.SIGALRM, *_STOP_SIGNALS)
        # Block first: an armed socket's signal must never reach its default action.
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        libc = _libc()
        try:
            self._sfd_block = _signalfd(libc, watched, _SFD_CLOEXEC)
            self._sfd_poll = _signalfd(libc, watched, _SFD_NONBLOCK | _SFD_CLOEXEC)
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            raise
        self.stats = {"records": 0, "overflows": 0, "rescans": 0}

    # ---- arming

    def _arm(self, fd: int) -> None:
        fcntl.fcntl(fd, fcntl.F_SETOWN, self._owner)
        if not self._classic:
            fcntl.fcntl(fd, fcntl.F_SETSIG, self._io_signal)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)

    def register(self, fd: int, events: int) -> None:
        self._arm(fd)
        self._interest[fd] = events
        self._pending[fd] = self._pending.get(fd, 0) | events  # what arrived before arming

    def modify(self, fd: int, events: int) -> None:
        grown = events & ~self._interest.get(fd, 0)
        self._interest[fd] = events
        if grown:
            self._pending[fd] = self._pending.get(fd, 0) | grown

    def unregister(self, fd: int) -> None:
        # The socket stays armed until it is closed; its records are filtered out.
        self._interest.pop(fd, None)
        self._pending.pop(fd, None)
        self.drain_fds.discard(fd)

    def maybe_more(self, fd: int, events: int) -> None:
        """The last read/accept may have left data behind: report fd again."""
        self._pending[fd] = self._pending.get(fd, 0) | events

    # ---- waiting

    def _read_records(self, timeout: float | None) -> bytes:
        if timeout == 0 or self._pending:
            try:
                return os.read(self._sfd_poll, _RECORD_SIZE * _BATCH)
            except BlockingIOError:
                return b""
        if timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.0005))
            self._timer_armed = True
        elif self._timer_armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._timer_armed = False
        data = os.read(self._sfd_block, _RECORD_SIZE * _BATCH)  # the wait: one blocking read
        try:  # and whatever else queued meanwhile, without blocking
            while len(data) % (_RECORD_SIZE * _BATCH) == 0:
                data += os.read(self._sfd_poll, _RECORD_SIZE * _BATCH)
        except BlockingIOError:
            pass
        return data

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        data = self._read_records(timeout)
        ready = self._pending
        self._pending = {}
        interest = self._interest
        io_signal = self._io_signal
        rescan = False
        seen: set[int] = set()
        unpack_from = _RECORD.unpack_from
        for offset in range(0, len(data), _RECORD_SIZE):
            signo, _err, _code, _pid, _uid, fd, _tid, band = unpack_from(data, offset)
            if signo == io_signal and not self._classic:
                events = interest.get(fd)
                if events is not None:
                    ready[fd] = ready.get(fd, 0) | (band & _BAND_MASK)
                    if fd in seen:
                        # Several arrivals in one report: a FIN may sit behind the
                        # data, and a recv() that returns data never returns the
                        # FIN too. This socket must be read until EAGAIN or EOF.
                        self.drain_fds.add(fd)
                    else:
                        seen.add(fd)
            elif signo == signal.SIGIO:  # classic mode, or the realtime queue overflowed
                rescan = True
                if not self._classic:
                    if not self.stats["overflows"]:
                        log.warning(
                            "realtime signal queue overflowed (RLIMIT_SIGPENDING): records were "
                            "lost, rescanning every socket (logged once)"
                        )
                    self.stats["overflows"] += 1
            elif signo in _STOP_SIGNALS:
                handler = signal.getsignal(signo)
                if callable(handler):
                    handler(signo, None)
            elif signo == signal.SIGALRM:
                self._timer_armed = False
        self.stats["records"] += len(data) // _RECORD_SIZE
        if rescan:
            self.stats["rescans"] += 1
            for fd, events in interest.items():
                ready[fd] = ready.get(fd, 0) | events
            # Nothing says how many arrivals each socket had: read each until EAGAIN.
            self.drain_fds.update(interest)
        return [(fd, mask & (interest[fd] | ERROR)) for fd, mask in ready.items() if fd in interest]

    def close(self) -> None:
        if self._timer_armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
        os.close(self._sfd_block)
        os.close(self._sfd_poll)
        # Drop what is still queued before unblocking, so nothing reaches a default action.
        for signum in (self._io_signal, signal.SIGIO, signal.SIGALRM):
            while signal.sigtimedwait([signum], 0) is not None:
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)


class EdgeConnection(Connection):
    """A connection under edge-triggered notification.

    A short recv() drains the data that had arrived when it ran, but not a
    FIN behind that data: recv() returns the data, and only the next recv()
    returns b"".  A FIN that arrives after the batch of records was read
    raises a record of its own, so one read per record batch is enough when
    the batch held one record for this socket.  Otherwise, read until EAGAIN
    or EOF: when the batch held several records for it (the poller puts it in
    ``drain_fds``), right after arming (what arrived before raised nothing),
    and after reading was paused (its records were dropped meanwhile).  At
    most DRAIN_READS reads per turn, then report again so others are served.
    """

    __slots__ = ("_drain",)
    DRAIN_READS = 16

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._drain = True

    def _read_ready(self) -> int:
        drain_fds = self._loop._poller.drain_fds
        if self._fd in drain_fds:
            drain_fds.discard(self._fd)
            self._drain = True
        if self._drain:
            for _ in range(self.DRAIN_READS):
                if not Connection._read_ready(self):
                    self._drain = False
                    return 0
            self._loop._poller.maybe_more(self._fd, READ)
            return RECV_SIZE
        received = Connection._read_ready(self)
        if received == RECV_SIZE:  # a full buffer: more may be queued, and no new edge
            self._loop._poller.maybe_more(self._fd, READ)
        return received

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._drain = True
        super().resume_reading()


class Server(ReadinessServer):
    name = "sigio"
    poller_class = SigioPoller
    connection_class = EdgeConnection

    def make_poller(self) -> Poller:
        return SigioPoller(classic=self.config.sigio_classic)

    def statistics(self) -> dict[str, int | float]:
        stats = super().statistics()
        if isinstance(self._poller, SigioPoller):
            stats.update(self._poller.stats)
        return stats
