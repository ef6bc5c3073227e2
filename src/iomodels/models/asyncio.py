"""asyncio: the same protocol objects on the standard library's event loop, as a peer.

Waiting for data: asyncio's selector loop blocks in the best selector of the
  platform (epoll here: selectors.DefaultSelector), as our epoll model does,
  but dispatches through Handle objects and call_soon queues.
Copying it: _SelectorSocketTransport recv()s (256 KiB max_size) and send()s
  on non-blocking sockets, on the loop's thread.
What to watch when measuring: the same wait as our epoll model, so the
  difference in CPU per request is the cost of asyncio's generality
  (handles, callbacks, selector key objects) in pure Python.
Facts that shaped this code:
  - Our Protocol is an asyncio.Protocol in all but name, so it runs unchanged;
    a thin wrapper adds what the contract asks of every model: the flow
    control water marks (64 KiB / 16 KiB), --max-connections, --idle-timeout,
    and the set of connections that a graceful stop closes.
  - asyncio already isolates a protocol callback that raises (_fatal_error
    closes only that transport and logs) and backs off on EMFILE
    (ACCEPT_RETRY_DELAY, 1 s).
  - TCP_NODELAY is asyncio's default for TCP transports (3.6+).
  - transport.sendfile() (core/protocol.py) is the loop's own
    ``loop.sendfile(transport, file, offset, n, fallback=False)``, in pieces
    of SENDFILE_PIECE so that each piece counts as progress for the idle
    timeout (and, within a piece, the peer's TCP bytes_acked, which the idle
    sweep reads): os.sendfile on asyncio's selector loop, the aio proactor's
    os.sendfile on ``aio``.  uvloop has no sendfile (its Loop leaves
    AbstractEventLoop.sendfile raising NotImplementedError): there the file is
    read with os.pread in HIGH_WATER blocks and written, waiting for
    resume_writing above the high-water mark: the bytes pass through the
    process, as asyncio's own fallback does.
  - transport.run_in_worker() takes the same path as our own loops
    (core/offload.py): the job goes on the WorkerPool's SimpleQueue, and the
    pool's thread hands the outcome (a ``Finished``) back with
    ``loop.call_soon_threadsafe``, which wakes the loop (asyncio's self-pipe,
    uvloop's uv_async_send, aio's ring).  ``loop.run_in_executor`` made an
    asyncio future chained to a concurrent.futures one per call (a
    Condition, the executor's idle semaphore, two done callbacks and a
    call_soon_threadsafe that sets the asyncio future, whose own callback
    then ran ``done`` a loop turn later).  The stop needs nothing of its
    own: serve.py's ``workers.shutdown(stop_deadline)`` drops what waits
    and joins what runs, as for the other loops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from iomodels.core.protocol import HIGH_WATER, LOW_WATER, completed, file_aborted, file_span, tcp_bytes_acked
from iomodels.core.server import (
    ACCEPT_RESOURCE_ERRNOS,
    ACCEPT_RETRY_DELAY_S,
    STOP_SIGNALS,
    BaseServer,
    release_listener,
)

log = logging.getLogger("iomodels")

SENDFILE_PIECE = 1024 * 1024  # bytes per loop.sendfile() call (see the docstring)


class _Transport:
    """What our protocols see on asyncio/uvloop: the loop's transport, plus run_in_worker.

    uvloop's transports are C types that take no new attributes, so the
    protocol gets this thin proxy instead.  Its methods are the real
    transport's bound methods, stored once: write() costs no extra frame.
    """

    __slots__ = (
        "_transport",
        "abort",
        "get_extra_info",
        "get_write_buffer_size",
        "pause_reading",
        "resume_reading",
        "set_write_buffer_limits",
        "write",
        "_server",
        "_tracked",
        "sendfile_native",
    )

    def __init__(self, transport: Any, server: Server, tracked: _Tracked) -> None:
        self._transport = transport
        self._server = server
        self._tracked = tracked
        self.write = transport.write
        self.abort = transport.abort
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading
        self.get_extra_info = transport.get_extra_info
        self.get_write_buffer_size = transport.get_write_buffer_size
        self.set_write_buffer_limits = transport.set_write_buffer_limits
        self.sendfile_native: bool | None = None  # how the last sendfile() went (None: none yet)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close (connection_lost gets a TimeoutError) after ``seconds`` without
        progress, counted from now; None: the server's default, 0: never."""
        server = self._server
        if seconds is None:
            seconds = server.config.idle_timeout_s
        elif seconds < 0:
            raise ValueError(f"idle timeout must be >= 0 seconds, not {seconds!r}")
        tracked = self._tracked
        tracked.idle_timeout_s = seconds
        tracked.last_active = time.monotonic()
        tracked._seen_buffer = self._transport.get_write_buffer_size()
        if seconds > 0:
            server._watch_idle(seconds)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None, *, done: Any = None) -> None:
        """The loop's sendfile, in pieces (see the module docstring); ``done``
        gets the task (core/protocol.py: the contract).  The file's position
        is left after what was sent (asyncio's loop.sendfile seeks it)."""
        tracked = self._tracked
        if tracked.file_task is not None:
            raise RuntimeError("sendfile: a transfer is already in progress on this transport")
        if isinstance(file, int):
            file = open(file, "rb", buffering=0, closefd=False)  # noqa: SIM115 - the caller's fd
        _fd, count = file_span(file, offset, count)
        loop = asyncio.get_running_loop()
        task = tracked.file_task = loop.create_task(self._send_file(loop, file, offset, count))
        task.add_done_callback(lambda t: self._file_done(done, t))

    async def _send_file(self, loop: Any, file: Any, offset: int, count: int) -> int:
        transport = self._transport
        tracked = self._tracked
        sent = calls = 0
        native = True
        try:
            while sent < count:
                if transport.is_closing():
                    raise file_aborted()
                piece = min(count - sent, SENDFILE_PIECE if native else HIGH_WATER)
                if native:
                    try:
                        got = await loop.sendfile(transport, file, offset + sent, piece, fallback=False)
                    except (NotImplementedError, asyncio.SendfileNotAvailableError, RuntimeError):
                        # uvloop (no sendfile), a file os.sendfile cannot take, a
                        # transport asyncio has no native path for: read + write.
                        if transport.is_closing():
                            raise file_aborted() from None
                        native = False
                        continue
                else:
                    data = os.pread(file.fileno(), piece, offset + sent)
                    got = len(data)
                    if got:
                        transport.write(data)
                        await tracked.writable()
                calls += 1
                sent += got
                tracked.last_active = time.monotonic()
                if got < piece:
                    break  # the file ended early: done gets the short count
        except asyncio.CancelledError:  # connection_lost cancelled us
            raise file_aborted() from None
        finally:
            self.sendfile_native = native
            by = "loop.sendfile" if native else "pread+write"
            peer = transport.get_extra_info("peername")
            log.debug("sendfile to %s: %d bytes by %s in %d calls", peer, sent, by, calls)
        return sent

    def _file_done(self, done: Any, task: Any) -> None:
        tracked = self._tracked
        tracked.file_task = None
        if done is not None:
            exc = task.exception() if not task.cancelled() else file_aborted()
            try:
                done(completed(0 if exc is not None else task.result(), exc))
            except Exception as error:
                log.error("protocol sendfile done raised; closing the connection", exc_info=error)
                self._transport.abort()
        if tracked.close_after_file:
            self._transport.close()

    def is_closing(self) -> bool:
        return self._tracked.close_after_file or self._transport.is_closing()

    def close(self) -> None:
        """Flush, then close: after the file, if one is going out."""
        if self._tracked.file_task is not None:
            self._tracked.close_after_file = True
        else:
            self._transport.close()

    def run_in_worker(self, func: Any, *args: Any, done: Any = None) -> None:
        """func(*args) on the server's worker pool; done(outcome) on the loop
        (core/offload.py; the module docstring says why not run_in_executor)."""
        workers = self._server.workers
        if done is None:
            workers.run(func, args, None)
            return
        # The pool's thread hands the Finished to the loop; should the loop be
        # closed by then (the stop), call_soon_threadsafe raises RuntimeError,
        # which the pool swallows: the connection is gone, nobody to tell.
        call, worker_done = asyncio.get_running_loop().call_soon_threadsafe, self._worker_done
        workers.run(func, args, lambda outcome: call(worker_done, done, outcome))

    def _worker_done(self, done: Any, outcome: Any) -> None:
        if self._transport.is_closing():
            return  # the connection went meanwhile: nobody to tell
        try:
            done(outcome)
        except Exception as exc:
            log.error("protocol run_in_worker done raised; closing the connection", exc_info=exc)
            self._transport.abort()


class _Tracked(asyncio.Protocol):
    """Wraps one of our protocols: limits and bookkeeping, then plain forwarding."""

    __slots__ = (
        "_server",
        "_inner",
        "transport",
        "last_active",
        "idle_timeout_s",
        "timed_out",
        "_seen_buffer",
        "_acked",
        "file_task",
        "close_after_file",
        "_writable",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self._inner: Any = None
        self.transport: Any = None
        self.last_active = time.monotonic()
        self.idle_timeout_s = server.config.idle_timeout_s  # set_idle_timeout(); 0: never
        self.timed_out = False  # the idle sweep aborted it: connection_lost gets a TimeoutError
        self._seen_buffer = 0
        self._acked: int | None = None  # the peer's TCP bytes_acked at the last idle sweep, while a file goes
        self.file_task: Any = None  # a sendfile() in progress (_Transport)
        self.close_after_file = False  # close() waits for it
        self._writable: Any = None  # a future the read+write sendfile waits on

    async def writable(self) -> None:
        """Return once the write buffer is back below the low-water mark."""
        if self.transport.get_write_buffer_size() <= HIGH_WATER:
            return
        self._writable = asyncio.get_running_loop().create_future()
        try:
            await self._writable
        finally:
            self._writable = None

    def close(self) -> None:
        """The graceful stop: flush (after the file, if one is going out), then close."""
        if self.file_task is not None:
            self.close_after_file = True
        else:
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        server = self._server
        limit = server.config.max_connections
        # The stop itself, not state.stopping: a supervisor's worker says
        # stopping (/health 503) while it still accepts and serves.
        if server._stop.is_set() or (limit and len(server.connections) >= limit):
            transport.abort()  # --max-connections: accepted and closed at once
            return
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        server.connections.add(self)
        self._inner = server.protocol_factory()
        self._inner.connection_made(_Transport(transport, server, self))

    def data_received(self, data: bytes) -> None:
        self.last_active = self._server.now
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._inner is None:
            return
        if self.file_task is not None:
            self.file_task.cancel()  # the loop's sendfile would wait on a closed socket
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionAbortedError("the connection closed"))
        self._server.connections.discard(self)
        self._server.closed.set()
        self._server._exhausted_logged = False
        if self.timed_out and exc is None:
            exc = TimeoutError(f"no progress for {self.idle_timeout_s:g} s (idle timeout)")
        self._inner.connection_lost(exc)


class Server(BaseServer):
    name = "asyncio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[_Tracked] = set()
        self.now = time.monotonic()
        self.closed: asyncio.Event
        self._stop: asyncio.Event
        self._signals = 0
        self._exhausted_logged = False
        self._idle_period_s = 0.0  # how often _idle_sweep runs; 0: it does not
        self._sweeper: asyncio.Task | None = None

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    def serve_forever(self) -> None:
        loop = self.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            loop.close()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            self.note_stop_signal()
            log.info("signal %s: stopping (again to exit at once)", signal.Signals(signum).name)
            self._stop.set()
        else:
            log.info("signal %s again: exiting now", signal.Signals(signum).name)
            for conn in list(self.connections):
                conn.transport.abort()
            self.closed.set()

    def stop_accepting(self, release: bool = False) -> None:
        self._loop.call_soon_threadsafe(self._close_accepting, release)

    def _close_accepting(self, release: bool) -> None:
        if release:  # first: once closed, the descriptor's number may be a new connection's
            release_listener(self.listener)
        self._server.close()  # stops accepting and closes the listening socket, nothing else

    # ---- idle timeout: a sweep as often as the shortest timeout asked for
    # needs (a quarter of it, at most 1 s), as in core/loop.py.

    def _watch_idle(self, limit_s: float) -> None:
        period_s = min(limit_s / 4, 1.0)
        if self._idle_period_s and period_s >= self._idle_period_s:
            return
        self._idle_period_s = period_s
        if self._sweeper is not None:
            self._sweeper.cancel()  # it may be asleep for a longer period
        self._sweeper = asyncio.get_running_loop().create_task(self._idle_sweep())

    async def _idle_sweep(self) -> None:
        while True:
            await asyncio.sleep(self._idle_period_s)
            self.now = now = time.monotonic()
            for conn in list(self.connections):
                pending = conn.transport.get_write_buffer_size()
                if pending < conn._seen_buffer:  # the peer read some: progress
                    conn.last_active = now
                conn._seen_buffer = pending
                if conn.file_task is not None and conn.idle_timeout_s:
                    # A 1 MiB loop.sendfile() piece says nothing until it is
                    # all out: what the peer acknowledged meanwhile is progress.
                    acked = tcp_bytes_acked(conn.transport.get_extra_info("socket"))
                    if acked is not None and conn._acked is not None and acked != conn._acked:
                        conn.last_active = now
                    conn._acked = acked
                limit_s = conn.idle_timeout_s
                if limit_s and now - conn.last_active > limit_s:
                    log.debug("connection idle for %.1f s: closing", limit_s)
                    conn.timed_out = True
                    conn.transport.abort()

    def _exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # asyncio (3.11) reports EMFILE on accept once per accept() of its
        # batch loop, up to `backlog` times a second: log it once per episode.
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in ACCEPT_RESOURCE_ERRNOS:
            if not self._exhausted_logged:
                self._exhausted_logged = True
                log.warning(
                    "accept: %s; asyncio retries every %.0f s (logged once until a connection closes)",
                    exc.strerror,
                    ACCEPT_RETRY_DELAY_S,
                )
            return
        loop.default_exception_handler(context)

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self._exception_handler)
        self._stop = asyncio.Event()
        self.closed = asyncio.Event()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            self._loop = loop
            self._server = server = await loop.create_server(
                lambda: _Tracked(self), sock=self.listener, backlog=self.config.backlog
            )
            if self.config.idle_timeout_s > 0:
                self._watch_idle(self.config.idle_timeout_s)
            self.announce()
            await self._stop.wait()
            # Graceful stop: stop accepting, close each connection (asyncio
            # flushes the write buffer first), abort what is left at the deadline.
            server.close()
            for conn in list(self.connections):
                conn.close()
            deadline = self.flush_deadline  # time.monotonic(): loop.time() is uvloop's own clock
            while self.connections and (left := deadline - time.monotonic()) > 0:
                self.closed.clear()
                try:
                    await asyncio.wait_for(self.closed.wait(), left)
                except TimeoutError:
                    break
            for conn in list(self.connections):
                conn.transport.abort()
            await asyncio.sleep(0)  # let connection_lost run
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
