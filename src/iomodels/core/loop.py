"""What the event loops of this project share, written once: a call_soon
queue and timers (CallbackQueue), the transport calls that do not depend on
how the IO is done (LoopConnection), and the server around the IO
(LoopServer): serve_forever's scaffolding (the signal wakeup socket,
signal.set_wakeup_fd, StopSignals), admission of an accepted connection,
the connection table, pausing accepts when descriptors run out, the idle
sweep and the graceful stop.

Used by the readiness loop (models/_readiness.py) and the completion loop
(models/io_uring.py): what is left in those is how each waits and does IO.
The blocking models have no loop, and asyncio/uvloop bring their own.  The
owner sets ``now`` once per loop turn (time.monotonic), so timers compare
against one clock reading per turn, not one per timer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from iomodels.core.protocol import completed, file_span, tcp_bytes_acked
from iomodels.core.server import ACCEPT_RETRY_DELAY_S, BaseServer, StopSignals, release_listener

log = logging.getLogger("iomodels")

Timer = list  # [deadline, seq, callback, active]: a list so that cancel is one store


class CallbackQueue:
    """call_soon / call_later for a single-threaded loop."""

    def __init__(self) -> None:
        self.now = time.monotonic()
        self._ready: deque[tuple[Callable[..., Any], Any]] = deque()  # call_soon queue
        self._timers: list[Timer] = []  # heap of [deadline, seq, callback, active]
        self._timer_seq = itertools.count()  # FIFO among timers with equal deadlines
        self._wake_w: socket.socket | None = None  # set by the owner while its loop runs

    def call_soon(self, callback: Callable[..., Any], arg: Any = None) -> None:
        self._ready.append((callback, arg))

    def call_soon_threadsafe(self, callback: Callable[..., Any], arg: Any = None) -> None:
        """call_soon from another thread: queue, then wake the loop's wait."""
        self._ready.append((callback, arg))  # deque.append is atomic
        wake = self._wake_w
        if wake is not None:
            try:
                wake.send(b"\0")  # the signal wakeup socket: the loop drains it
            except OSError:  # full (a wake-up is already pending) or closing
                pass

    def call_later(self, delay_s: float, callback: Callable[[], Any]) -> Timer:
        timer = [time.monotonic() + delay_s, next(self._timer_seq), callback, True]
        heapq.heappush(self._timers, timer)
        return timer

    @staticmethod
    def cancel_timer(timer: Timer | None) -> None:
        if timer is not None:
            timer[3] = False  # lazily dropped when it reaches the top of the heap

    def _run_ready(self) -> None:
        """The end of a loop turn: run what is queued now; what these queue runs next turn."""
        ready = self._ready
        for _ in range(len(ready)):
            callback, arg = ready.popleft()
            callback(arg)

    def _drain_ready(self) -> None:
        """At exit: run everything still queued (the connection_lost calls)."""
        ready = self._ready
        while ready:
            callback, arg = ready.popleft()
            callback(arg)

    def _run_timers(self) -> float | None:
        """Run due timers; return seconds until the next one (None: none)."""
        timers = self._timers
        while timers:
            deadline, _, callback, active = timers[0]
            if not active:
                heapq.heappop(timers)
                continue
            if deadline > self.now:
                return deadline - self.now
            heapq.heappop(timers)
            callback()
        return None


class FileTransfer:
    """One transport.sendfile() on our own loops (readiness, io_uring): where
    it is, and how it ends.  ``ahead``: bytes of the transport's buffer that
    were written before the call and go first; what is written later goes
    behind the file."""

    __slots__ = ("fd", "offset", "left", "sent", "done", "ahead", "calls", "started", "pipe", "in_flight",
                 "in_pipe", "error", "eof", "chunk", "acked")  # fmt: skip

    def __init__(self, file: Any, offset: int, count: int | None, done: Callable[[Any], Any] | None) -> None:
        self.fd, self.left = file_span(file, offset, count)
        self.offset = offset
        self.sent = 0
        self.done = done
        self.ahead = 0
        self.calls = 0  # os.sendfile() calls, or splice SQEs
        # io_uring only: the pipe the splices go through, and what is in it or in the kernel.
        self.started = False
        self.pipe: tuple[int, int] | None = None
        self.in_flight = 0  # SQEs whose CQE is still due
        self.in_pipe = 0  # bytes spliced into the pipe, not yet out of it
        self.error: BaseException | None = None
        self.eof = False  # the file ended before count
        self.chunk = 0
        self.acked: int | None = None  # the peer's TCP bytes_acked at the last idle sweep

    def complete(self, conn: Any, exc: BaseException | None) -> None:
        """Queue ``done`` (call_soon: never inside the caller's own call)."""
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None
        stats = conn._loop._stats
        stats["sendfile_bytes"] = stats.get("sendfile_bytes", 0) + self.sent
        stats["sendfile_calls"] = stats.get("sendfile_calls", 0) + self.calls
        log.debug("sendfile to %s: %d bytes by %s in %d calls%s", conn._peername, self.sent, conn.sendfile_by,
                  self.calls, f" ({exc!r})" if exc is not None else "")  # fmt: skip
        if self.done is not None:
            conn._loop._ready.append((self._call_done, (conn, completed(self.sent, exc))))

    def _call_done(self, item: tuple[Any, Any]) -> None:
        conn, future = item
        try:
            self.done(future)
        except Exception as exc:
            if conn._closed:
                log.error("sendfile done callback raised", exc_info=exc)
            else:
                conn._protocol_error(exc, "sendfile done")


class LoopConnection:
    """What the connections of our own loops (readiness, io_uring) share:
    close/abort/get_extra_info, how one ends on an error, its idle timeout.
    Needs ``_loop``, ``_sock``, ``_protocol``, ``_peername``, ``_closing``,
    ``_buffer``, ``_file``, ``last_active``, ``idle_timeout_s``, and two methods of the
    loop's own connection, where the loops differ: ``_finish(exc)`` (what it
    has to cancel or unregister) and ``_flush_before_close()``."""

    __slots__ = ()

    def _begin_file(self, file: Any, offset: int, count: int | None, done: Any) -> FileTransfer | None:
        """sendfile()'s start on both loops: one transfer at a time; on a
        closing transport ``done`` hears it failed and None is returned; else
        the transfer, behind what the buffer holds, is the connection's."""
        if self._file is not None:
            raise RuntimeError("sendfile: a transfer is already in progress on this transport")
        transfer = FileTransfer(file, offset, count, done)
        if self._closing:
            transfer.complete(self, ConnectionAbortedError("sendfile: the transport is closing"))
            return None
        transfer.ahead = len(self._buffer)
        self._file = transfer
        return transfer

    def _flush_before_close(self) -> bool:
        """close(): True if output is still pending, after arranging for the
        connection to finish once it is flushed; False to finish now."""
        raise NotImplementedError

    # ---- protocol-facing API (the Transport protocol) that is the same on both loops

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._flush_before_close():
            self._finish(None)

    def abort(self) -> None:
        self._closing = True
        self._buffer.clear()
        self._finish(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:  # closed
                return default
        if name == "socket":
            return self._sock
        return default

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close this connection (connection_lost gets a TimeoutError) after
        ``seconds`` without progress, counted from now; None: the server's
        default (--idle-timeout), 0: never."""
        loop = self._loop
        if seconds is None:
            seconds = loop.config.idle_timeout_s
        elif seconds < 0:
            raise ValueError(f"idle timeout must be >= 0 seconds, not {seconds!r}")
        self.idle_timeout_s = seconds
        self.last_active = loop.now
        if seconds > 0:
            loop._watch_idle(seconds)

    def _fatal(self, exc: OSError) -> None:
        # Reset, broken pipe, timeout: this peer only; the server carries on.
        log.debug("connection %s lost: %r", self._peername, exc)
        self._closing = True
        self._buffer.clear()
        self._finish(exc)

    def _protocol_error(self, exc: Exception, callback: str) -> None:
        log.error(
            "protocol %s.%s raised; closing connection %s",
            type(self._protocol).__name__,
            callback,
            self._peername,
            exc_info=exc,
        )
        self._closing = True
        self._buffer.clear()
        self._finish(exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        except Exception as error:
            log.error("protocol connection_lost raised", exc_info=error)
        self._protocol = None


class LoopServer(CallbackQueue, BaseServer):
    """What the two event-loop servers (readiness, io_uring) share above their
    IO.  A subclass supplies its IO: ``_open_io()`` (the poller or the ring,
    made in the serving thread), ``_watch_wakeup(sock)``, ``_run()`` (the
    loop turns), ``_close_io()`` (abort, drain, close), and how it accepts
    (``_start_accepting`` / ``_stop_accepting``).  Its connections offer
    ``close()`` (flush, then close), ``abort()``, ``last_active`` and
    ``_peername``, and call ``_connection_closed()`` once their fd is free.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        BaseServer.__init__(self, *args, **kwargs)
        CallbackQueue.__init__(self)
        self._connections: dict[int, Any] = {}  # key -> open connection
        self._accept_paused_why = ""  # "", "exhausted" (EMFILE...) or "fd_setsize" (select)
        self._accept_retry: Timer | None = None
        self._accept_closed = False  # stop_accepting(): for good, unlike a pause
        self._idle_period_s = 0.0  # how often _idle_sweep runs; 0: it does not
        self._idle_sweeper: Timer | None = None
        self._stopping = False
        self._wake_r: socket.socket | None = None  # the signal wakeup socket, while serving
        self._stats: dict[str, int] = {"accepted": 0, "rejected": 0}  # the loop adds its own

    # ---- what the loop supplies

    def _open_io(self) -> None:
        raise NotImplementedError

    def _watch_wakeup(self, sock: socket.socket) -> None:
        """Make the loop's wait return when ``sock`` becomes readable."""
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _close_io(self) -> None:
        """Abort what is open, run the last callbacks, release the IO."""
        raise NotImplementedError

    def _start_accepting(self) -> None:
        raise NotImplementedError

    def _stop_accepting(self) -> None:
        raise NotImplementedError

    # ---- serving

    def serve_forever(self) -> None:
        """Serve until stopped.  Signals: a Python handler runs only when the
        wait returns, so the C-level handler writes to a wakeup socket
        (signal.set_wakeup_fd) that the wait watches; the Python handler only
        queues the work (asyncio does the same).  call_soon_threadsafe()
        wakes the wait through the same socket."""
        self._open_io()  # here, in the serving thread: SINGLE_ISSUER rings belong to it
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake_r, self._wake_w = wake_r, wake_w
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signals = StopSignals(self._stop_signal, self._stop_signal_again).install()
        try:
            self._watch_wakeup(wake_r)
            self._start_accepting()
            if self.config.idle_timeout_s > 0:
                self._watch_idle(self.config.idle_timeout_s)
            self.announce()
            self._run()
        finally:
            signals.restore()
            signal.set_wakeup_fd(old_wakeup)
            try:
                self._close_io()
            finally:
                self._wake_w = None
                wake_r.close()
                wake_w.close()

    def _admit(self) -> bool:
        """An accept succeeded: may the connection be served?  No beyond
        --max-connections (it is closed at once) or once stopping."""
        if self._accept_paused_why == "exhausted":
            self._accept_paused_why = ""  # descriptors again: the episode is over
        limit = self.config.max_connections
        if (limit and len(self._connections) >= limit) or self._stopping:
            self._stats["rejected"] += 1
            return False
        return True

    def _start_protocol(self, conn: Any) -> bool:
        """A new connection, in the table: its protocol's connection_made.
        False if that raised (the connection is closed)."""
        self._stats["accepted"] += 1
        protocol = self.protocol_factory()
        conn._protocol = protocol
        try:
            protocol.connection_made(conn)
        except Exception as exc:
            conn._protocol_error(exc, "connection_made")
            return False
        return True

    # ---- accepting when descriptors run out

    def _accept_exhausted(self, err: int) -> None:
        # Out of descriptors: the connection stays in the backlog, so accepting
        # again now would fail again at once and spin.  Pause; resume when a
        # connection closes or after ACCEPT_RETRY_DELAY_S.  Logged once per
        # episode: the episode ends when an accept succeeds or a descriptor frees.
        if self._accept_paused_why != "exhausted":
            log.warning(
                "accept: %s; pausing accepts until a descriptor frees up (%d open)",
                os.strerror(err),
                len(self._connections),
            )
        self._accept_paused_why = "exhausted"
        self._stop_accepting()
        self.cancel_timer(self._accept_retry)
        self._accept_retry = self.call_later(ACCEPT_RETRY_DELAY_S, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_retry = None
        if not self._accept_closed:
            self._start_accepting()

    def _connection_closed(self) -> None:
        """A connection's fd is free again: resume accepting if that paused it."""
        why = self._accept_paused_why
        if why:
            if why == "fd_setsize":
                log.info("descriptors freed; accepting and serving new connections again")
            self._accept_paused_why = ""
            self.cancel_timer(self._accept_retry)
            self._resume_accepting()

    # ---- idle timeout: a sweep over the connections, as often as the
    # shortest timeout asked for needs (a quarter of it, at most 1 s): no
    # timer per connection, nothing on the hot path but a last_active store.

    def _watch_idle(self, limit_s: float) -> None:
        """Sweep often enough for a connection whose limit is ``limit_s``."""
        period_s = min(limit_s / 4, 1.0)
        if self._idle_period_s and period_s >= self._idle_period_s:
            return
        self._idle_period_s = period_s
        self.cancel_timer(self._idle_sweeper)
        self._idle_sweeper = self.call_later(period_s, self._idle_sweep)

    def _idle_sweep(self) -> None:
        now = self.now
        for conn in list(self._connections.values()):
            limit_s = conn.idle_timeout_s
            transfer = conn._file
            if transfer is not None and limit_s:
                # A splice step on io_uring is up to 1 MiB and says nothing
                # until it is all out: what the peer acknowledged meanwhile
                # is its progress (core/protocol.py, sendfile's contract).
                acked = tcp_bytes_acked(conn._sock)
                if acked is not None and transfer.acked is not None and acked != transfer.acked:
                    conn.last_active = now
                transfer.acked = acked
            if limit_s and now - conn.last_active > limit_s:
                log.debug("connection %s idle for %.1f s: closing", conn._peername, limit_s)
                conn._fatal(TimeoutError(f"no progress for {limit_s:g} s (idle timeout)"))
        self._idle_sweeper = self.call_later(self._idle_period_s, self._idle_sweep)

    # ---- stopping

    def stop_accepting(self, release: bool = False) -> None:
        self._ready.append((self._close_accepting, release))  # the signal woke the loop

    def _close_accepting(self, release: bool) -> None:
        self._accept_closed = True
        self._stop_accepting()
        self.cancel_timer(self._accept_retry)
        if release:
            release_listener(self.listener)

    def _stop_signal(self) -> None:
        """The first SIGINT/SIGTERM (in the signal handler): start the stop
        budget's clock now, do the work on the loop."""
        self.note_stop_signal()
        self._ready.append((self._begin_stop, None))

    def _stop_signal_again(self) -> None:
        self._ready.append((self._stop_now, None))

    def _begin_stop(self, _arg: Any = None) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_accepting()
        self.cancel_timer(self._accept_retry)
        for conn in list(self._connections.values()):
            conn.close()  # flushes pending output first
        flush_s = max(0.0, self.flush_deadline - time.monotonic())
        if self._connections:
            log.info("flushing %d connection(s) for up to %.2f s", len(self._connections), flush_s)
        self.call_later(flush_s, self._abort_all)

    def _abort_all(self, _arg: Any = None) -> None:
        if self._connections:
            log.info("aborting %d connection(s)", len(self._connections))
        for conn in list(self._connections.values()):
            conn.abort()

    def _stop_now(self, _arg: Any = None) -> None:
        self._stopping = True
        self._stop_accepting()
        self._abort_all()
