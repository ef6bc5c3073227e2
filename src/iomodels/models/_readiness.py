"""The readiness loop shared by select, poll, epoll, kqueue and nonblocking.

These models differ only in how they *wait*: each supplies a :class:`Poller`
(register / modify / unregister / wait / close, as Redis's ae backends and
CPython's selectors).  Everything else lives once: accepting, reading,
writing and flow control here; timers, signals, admission, the idle sweep
and the graceful stop in core/loop.py, shared with the io_uring loop.  So a
diff of ``select.py`` against ``epoll.py`` is exactly the lesson.

Event masks use poll(2)'s bits, which epoll shares (EPOLLIN == POLLIN == 1,
EPOLLOUT == POLLOUT == 4, EPOLLERR == POLLERR == 8, EPOLLHUP == POLLHUP == 16):
poll and epoll hand back their kernel masks untranslated, the others translate.

Copying: recv() into a fresh bytes per readable event, send() of what the
protocol wrote (the rest waits for writability); a file from
transport.sendfile() goes by os.sendfile() once the bytes before it are out,
the kernel copying page cache to socket without the process seeing it.

One loop turn:

    1. wait(timeout)          the model's poller; timeout = next timer, 0 if work is queued
    2. dispatch               for each (fd, mask): read side first, then write side
    3. ready callbacks        connection_lost, signal handling (call_soon)
    4. due timers             idle sweep, accept retry, graceful-stop deadline

Facts that shaped this code:
- An interest set of 0 is *unregistered*, never registered as 0: epoll and
  poll report ERR/HUP even for an empty mask, and level-triggered that spins.
- A connection can close while later events for its fd are still in this
  turn's list, and the fd can be reused by an accept() in the same turn:
  handlers are looked up per event, and a stale event costs one EAGAIN.
- Signals: a Python handler runs only when the wait returns, so the C-level
  handler writes to a wakeup socket (signal.set_wakeup_fd, core/loop.py)
  that the poller watches; the Python handler just queues the work.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import time
from typing import Any

from iomodels.core.errors import DescriptorTooLarge
from iomodels.core.loop import FileTransfer, LoopConnection, LoopServer
from iomodels.core.offload import LoopWorkerMixin
from iomodels.core.protocol import HIGH_WATER, LOW_WATER, file_aborted
from iomodels.core.server import (
    ACCEPT_RESOURCE_ERRNOS,
    ACCEPT_SKIP_ERRNOS,
    RECV_SIZE,
    configure_accepted,
)

log = logging.getLogger("iomodels")

READ = 1  # fire when the descriptor is readable (POLLIN, EPOLLIN)
WRITE = 4  # fire when the descriptor is writable (POLLOUT, EPOLLOUT)
ERROR = 8 | 16 | 32  # POLLERR | POLLHUP | POLLNVAL: wakes the reader and the writer
READ_SIDE = READ | ERROR
WRITE_SIDE = WRITE | ERROR
ACCEPT_BATCH = 64  # accept() calls per readiness event of the listener
# sendfile(): at most this much per writability event (then the loop serves
# the others, and comes back: level-triggered pollers report the socket
# again, an edge-triggered one is told to with maybe_more).
SENDFILE_TURN = 4 * 1024 * 1024


class Poller(abc.ABC):
    """How a model waits.  ``wait`` returns ``[(fd, mask), ...]`` of ready fds."""

    name: str = "?"
    max_fd: int | None = None  # descriptors >= max_fd cannot be watched (select)
    # Edge-triggered pollers (sigio) report a descriptor when something *arrives*,
    # not while data remains: the loop then calls maybe_more() when an accept
    # batch hit its limit (and sigio's connections when a read filled its buffer).
    edge_triggered: bool = False

    def maybe_more(self, fd: int, events: int) -> None:
        """Report ``fd`` again at the next wait (edge-triggered pollers only)."""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    @abc.abstractmethod
    def register(self, fd: int, events: int) -> None: ...

    @abc.abstractmethod
    def modify(self, fd: int, events: int) -> None: ...

    @abc.abstractmethod
    def unregister(self, fd: int) -> None: ...

    @abc.abstractmethod
    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Block until some fd is ready or ``timeout`` seconds pass (None: forever)."""

    def close(self) -> None:
        pass


class Connection(LoopConnection, LoopWorkerMixin):
    """A transport over one non-blocking socket, driven by the loop."""

    sendfile_by = "os.sendfile"  # how sendfile() moves the file (its log line says)

    __slots__ = (
        "_loop",
        "_sock",
        "_fd",
        "_protocol",
        "_recv",
        "_send",
        "_buffer",
        "_file",
        "_events",
        "_reading_paused",
        "_protocol_paused",
        "_eof",
        "_closing",
        "_closed",
        "_peername",
        "last_active",
        "idle_timeout_s",
    )

    def __init__(self, loop: ReadinessServer, sock: socket.socket, peername: Any) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol: Any = None
        self._recv = sock.recv
        self._send = sock.send
        self._buffer = bytearray()  # pending output
        self._file: FileTransfer | None = None  # a sendfile() in progress
        self._events = 0  # mask registered with the poller
        self._reading_paused = False
        self._protocol_paused = False
        self._eof = False  # the peer half-closed
        self._closing = False  # close() called: flush, then close
        self._closed = False
        self._peername = peername
        self.last_active = loop.now
        self.idle_timeout_s = loop.config.idle_timeout_s  # set_idle_timeout(); 0: never

    # ---- protocol-facing API (the Transport protocol)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        buffer = self._buffer
        if not buffer and self._file is None:
            # Fast path, as asyncio: try the send now; most replies fit at once.
            try:
                sent = self._send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fatal(exc)
                return
            self.last_active = self._loop.now
            if sent == len(data):
                return
            buffer += memoryview(data)[sent:]
            self._update_interest()
        else:
            buffer += data
        if len(buffer) > HIGH_WATER and not self._protocol_paused:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._protocol_error(exc, "pause_writing")

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None, *, done: Any = None) -> None:
        """os.sendfile() on the non-blocking socket once the output written
        before is flushed, while the socket takes it; then the loop waits for
        writability as for any pending output (core/protocol.py: the contract)."""
        transfer = self._begin_file(file, offset, count, done)
        if transfer is None:
            return
        if transfer.ahead:
            self._update_interest()  # (already watching for writability)
        else:
            self._send_file()  # as write()'s fast path: the socket may take it all now

    def pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self._update_interest()

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._update_interest()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    # ---- loop-facing callbacks

    def _read_ready(self) -> int:
        """One recv(); returns how many bytes it delivered (0: none, EOF or closed)."""
        if self._reading_paused or self._eof or self._closing:
            return 0  # an ERR/HUP or stale event: the write side deals with it
        try:
            data = self._recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return 0  # not ready after all: wait again
        except OSError as exc:
            self._fatal(exc)
            return 0
        if data:
            self.last_active = self._loop.now
            try:
                self._protocol.data_received(data)
            except Exception as exc:
                self._protocol_error(exc, "data_received")
                return 0
            return len(data)
        # EOF: the peer half-closed.
        self._eof = True
        self._update_interest()
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_error(exc, "eof_received")
            return 0
        if not keep_open:
            self.close()
        return 0

    def _write_ready(self) -> None:
        buffer = self._buffer
        transfer = self._file
        if transfer is not None and not transfer.ahead:
            self._send_file()
            return
        if not buffer:
            return  # stale event: the fd may even belong to a new connection by now
        try:
            # With a file waiting, only what was written before it (a copy: a
            # live memoryview would stop the del below from resizing the buffer).
            sent = self._send(buffer if transfer is None else buffer[: transfer.ahead])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        self.last_active = self._loop.now
        del buffer[:sent]
        if transfer is not None:
            transfer.ahead -= sent
        if self._protocol_paused and len(buffer) <= LOW_WATER:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._protocol_error(exc, "resume_writing")
                return
        if transfer is not None:
            if not transfer.ahead and self._file is transfer:
                self._send_file()
            return
        if not buffer:
            if self._closing:
                self._finish(None)
            else:
                self._update_interest()

    def _send_file(self) -> None:
        """The file's turn: os.sendfile() while the socket takes it, at most
        SENDFILE_TURN per call of ours; then wait for writability."""
        transfer = self._file
        sendfile = os.sendfile
        budget = SENDFILE_TURN
        while transfer.left:
            transfer.calls += 1
            try:
                sent = sendfile(self._fd, transfer.fd, transfer.offset, min(transfer.left, budget))
            except (BlockingIOError, InterruptedError):
                break  # the socket is full: wait for writability
            except OSError as exc:  # reset, broken pipe; or the file's own error (EIO)
                self._fatal(exc)  # _finish hands the error to done
                return
            if not sent:
                transfer.left = 0  # the file ended early: done gets the short count
                break
            transfer.offset += sent
            transfer.left -= sent
            transfer.sent += sent
            self.last_active = self._loop.now
            budget -= sent
            if budget <= 0:
                if self._loop._edge_triggered:  # no new edge while the socket stays writable
                    self._loop._poller.maybe_more(self._fd, WRITE)
                break
        if transfer.left:
            self._update_interest()
            return
        self._file = None
        transfer.complete(self, None)
        if self._buffer:
            self._update_interest()  # what was written behind the file: _write_ready sends it
            if self._loop._edge_triggered:  # writable all along: no new edge will report it
                self._loop._poller.maybe_more(self._fd, WRITE)
        elif self._closing:
            self._finish(None)
        else:
            self._update_interest()

    # ---- internals

    def _flush_before_close(self) -> bool:
        if self._file is not None:
            return True  # _send_file, then _write_ready, finish
        if self._buffer:
            self._update_interest()  # stop reading, keep flushing: _write_ready finishes
            return True
        return False

    def _update_interest(self) -> None:
        if self._closed:
            return
        want = WRITE if self._buffer or self._file is not None else 0
        if not (self._reading_paused or self._eof or self._closing):
            want |= READ
        if want != self._events:
            self._loop._set_interest(self._fd, self._events, want)
            self._events = want

    def _finish(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        transfer = self._file
        if transfer is not None:  # done hears of it before connection_lost
            self._file = None
            transfer.complete(self, exc or file_aborted())
        if self._events:
            loop._set_interest(self._fd, self._events, 0)
            self._events = 0
        loop._connections.pop(self._fd, None)
        loop._handlers.pop(self._fd, None)
        self._sock.close()
        loop._ready.append((self._connection_lost, exc))
        loop._connection_closed()


class _Listener:
    """The listening socket's handler: accepts in batches."""

    __slots__ = ("_accept", "_fd", "_loop")

    def __init__(self, loop: ReadinessServer, sock: socket.socket) -> None:
        self._loop = loop
        self._accept = sock.accept
        self._fd = sock.fileno()

    def _read_ready(self) -> None:
        loop = self._loop
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peername = self._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    loop._accept_exhausted(exc.errno)
                    return
                if exc.errno in ACCEPT_SKIP_ERRNOS:
                    continue
                raise  # anything else is our bug: let it through (Twisted)
            loop._accepted(sock, peername)
        if loop._edge_triggered:  # stopped at the batch limit: more may be waiting
            loop._poller.maybe_more(self._fd, READ)

    def _write_ready(self) -> None:
        pass


class _Wakeup:
    """Reads the bytes the C signal handler wrote, so the socket does not stay readable."""

    __slots__ = ("_recv",)

    def __init__(self, sock: socket.socket) -> None:
        self._recv = sock.recv

    def _read_ready(self) -> None:
        try:
            while self._recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _write_ready(self) -> None:
        pass


class ReadinessServer(LoopServer):
    """A readiness-notification loop; subclasses set ``poller_class``."""

    poller_class: type[Poller]
    connection_class: type[Connection] = Connection

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return cls.poller_class.available()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._poller: Poller | None = None
        self._edge_triggered = False
        self._handlers: dict[int, Any] = {}  # fd -> object with _read_ready/_write_ready
        self._connections: dict[int, Connection] = {}  # fd -> connection
        self._accepting = False
        self._stats.update(wakeups=0, events=0)

    # ---- poller bookkeeping

    def _set_interest(self, fd: int, old: int, new: int) -> None:
        poller = self._poller
        if not old:
            poller.register(fd, new)
        elif not new:
            poller.unregister(fd)
        else:
            poller.modify(fd, new)

    # ---- accepting

    def _start_accepting(self) -> None:
        if not self._accepting and not self._stopping:
            self._poller.register(self.listener.fileno(), READ)
            self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting:
            self._poller.unregister(self.listener.fileno())
            self._accepting = False

    def _accepted(self, sock: socket.socket, peername: Any) -> None:
        if not self._admit():
            sock.close()  # --max-connections: accepted and closed at once
            return
        fd = sock.fileno()
        max_fd = self._poller.max_fd
        if max_fd is not None and fd >= max_fd:
            self._stats["rejected"] += 1
            if self._accept_paused_why != "fd_setsize":
                log.warning(
                    "%s cannot watch descriptor %d (>= FD_SETSIZE %d): closing new connections "
                    "until descriptors free up (%d open)",
                    self._poller.name,
                    fd,
                    max_fd,
                    len(self._connections),
                )
                self._accept_paused_why = "fd_setsize"
            sock.close()
            return
        sock.setblocking(False)
        configure_accepted(sock)
        conn = self.connection_class(self, sock, peername)
        try:
            self._poller.register(fd, READ)
        except DescriptorTooLarge:  # a poller with a limit it did not declare in max_fd
            sock.close()
            return
        conn._events = READ
        self._connections[fd] = conn
        self._handlers[fd] = conn
        self._start_protocol(conn)

    def statistics(self) -> dict[str, int | float]:
        stats = dict(self._stats)
        stats["connections"] = len(self._connections)
        stats["events_per_wakeup"] = stats["events"] / stats["wakeups"] if stats["wakeups"] else 0.0
        return stats

    # ---- the loop

    def make_poller(self) -> Poller:
        return self.poller_class()

    def _open_io(self) -> None:
        self._poller = self.make_poller()
        self._edge_triggered = self._poller.edge_triggered
        self.listener.setblocking(False)
        self._handlers[self.listener.fileno()] = _Listener(self, self.listener)

    def _watch_wakeup(self, sock: socket.socket) -> None:
        self._handlers[sock.fileno()] = _Wakeup(sock)
        self._poller.register(sock.fileno(), READ)

    def _close_io(self) -> None:
        for conn in list(self._connections.values()):
            conn.abort()
        self._drain_ready()  # the connection_lost calls still queued
        self._poller.close()

    def _run(self) -> None:
        wait = self._poller.wait
        handlers = self._handlers
        ready = self._ready
        stats = self._stats
        monotonic = time.monotonic
        timeout: float | None = None
        while True:
            events = wait(0 if ready else timeout)
            self.now = monotonic()
            stats["wakeups"] += 1
            stats["events"] += len(events)
            for fd, mask in events:
                handler = handlers.get(fd)
                if handler is None:
                    continue  # closed earlier in this turn
                if mask == READ:  # the common case first: one test, one call
                    handler._read_ready()
                    continue
                if mask & READ_SIDE:
                    handler._read_ready()
                    handler = handlers.get(fd)  # the read may have closed it
                    if handler is None:
                        continue
                if mask & WRITE_SIDE:
                    handler._write_ready()
            if ready:
                self._run_ready()
            timeout = self._run_timers() if self._timers else None
            if self._stopping and not self._connections and not ready:
                return
