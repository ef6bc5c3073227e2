"""``UringEventLoop``: CPython's proactor event loop, on io_uring, on Unix.

``BaseProactorEventLoop(UringProactor())`` gives callbacks, timers, TCP,
TLS (``sslproto``), streams, UDP and the ``sock_*`` methods unchanged.  What
CPython's Windows proactor loop lacks, or does the Windows way, is added
here:

* ``add_reader`` / ``add_writer`` / ``remove_*``: one-shot ``POLL_ADD``s,
  re-armed after each completion (level-triggered, like a selector loop);
* signals: ``signal.set_wakeup_fd`` on the self-pipe (the proactor base
  installs it) and ``unix_events``' handler bookkeeping; the self-pipe
  reader hands the signal numbers it reads to ``_process_self_data``;
* Unix sockets, subprocesses (the policy's child watcher) and
  ``sock_connect`` name resolution, borrowed from ``unix_events`` /
  ``selector_events`` so that they behave the same.

Pipes (``connect_read_pipe`` / ``connect_write_pipe``, subprocess stdio)
use ``unix_events``' pipe transports on those POLL_ADD readers and writers:
they know Unix pipe semantics that CPython's proactor pipe transports (made
for Windows named pipes) do not (a pty's ``EIO`` at hang-up, a write end
learning that its reader went away, non-blocking mode).  The proactor's
READ / WRITE operations still serve ``sock_recv``-style calls on pipes.
"""

from __future__ import annotations

import contextvars
import heapq
import selectors
import socket
import sys
import warnings
from asyncio import (
    base_events,
    constants,
    events,
    exceptions,
    format_helpers,
    proactor_events,
    sslproto,
    trsock,
    unix_events,
)
from asyncio.log import logger
from select import POLLIN, POLLOUT

from iomodels.aio.proactor import UringProactor
from iomodels.aio.transport import RingSocketTransport
from iomodels.core.server import ACCEPT_RESOURCE_ERRNOS, ACCEPT_SKIP_ERRNOS

_unix = unix_events._UnixSelectorEventLoop
_MIN_SCHEDULED = base_events._MIN_SCHEDULED_TIMER_HANDLES
_MIN_CANCELLED_FRACTION = base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION
_MAX_SELECT_TIMEOUT = base_events.MAXIMUM_SELECT_TIMEOUT


class Handle(events.Handle):
    """``asyncio.Handle`` as ``call_soon`` makes it outside debug mode: the
    same slots, methods and name (its repr is a Handle's), with an
    ``__init__`` that does not ask the loop for its debug flag once more
    (``call_soon`` has just looked): one Python frame less per callback."""

    __slots__ = ()

    def __init__(self, callback, args, loop, context=None):
        if context is None:
            context = contextvars.copy_context()
        self._context = context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None


class TimerHandle(events.TimerHandle):
    """``asyncio.TimerHandle`` as ``call_at`` / ``call_later`` make it
    outside debug mode, for the same reason as ``Handle``: one frame (not
    three) to build."""

    __slots__ = ()

    def __init__(self, when, callback, args, loop, context=None):
        if context is None:
            context = contextvars.copy_context()
        self._context = context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None
        self._when = when
        self._scheduled = False

    def cancel(self):
        # TimerHandle.cancel + Handle.cancel in one frame (uvicorn cancels
        # a keep-alive timer per request): the loop is told first, then the
        # handle is marked, its repr kept in debug mode, its callback dropped.
        if not self._cancelled:
            self._loop._timer_handle_cancelled(self)
            self._cancelled = True
            if self._loop.get_debug():
                self._repr = repr(self)
            self._callback = None
            self._args = None


_Handle = Handle
_TimerHandle = TimerHandle
# Handle types whose _run() _run_once may do in line: asyncio's own, whose
# _run is Handle._run (a subclass that overrides it keeps its own).
_RUN_INLINE = frozenset(
    cls for cls in (events.Handle, events.TimerHandle, Handle, TimerHandle) if cls._run is events.Handle._run
)


def _created_by_caller(handle):
    """In debug mode a handle records where it was made, CPython's
    scheduling methods dropping their own frames from that stack; ours wrap
    them, so drop ours too: "created at" names the caller's line."""
    if handle._source_traceback:
        del handle._source_traceback[-1]
    return handle


def _callback_failed(handle, exc) -> None:
    """What ``Handle._run`` does when the callback raises."""
    cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


_SEND_NOW = int(socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)


class _UnixClose:
    """``connection_lost`` as CPython's proactor transports do it, except
    that ``shutdown()`` may fail: on Unix it raises ``ENOTCONN`` when the
    peer is gone already or a datagram socket was never connected (Windows
    never does), and that must not turn a clean close into an error."""

    def _call_connection_lost(self, exc):
        if self._called_connection_lost:
            return
        try:
            self._protocol.connection_lost(exc)
        finally:
            sock = self._sock
            if hasattr(sock, "shutdown") and sock.fileno() != -1:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            sock.close()
            self._sock = None
            server = self._server
            if server is not None:
                server._detach()
                self._server = None
            self._called_connection_lost = True


class _SocketTransport(_UnixClose, proactor_events._ProactorSocketTransport):
    def _data_received(self, data, length):
        # CPython's proactor transport lets an exception from a plain
        # protocol's data_received() escape into the loop's exception handler
        # and keeps the connection; its selector transports call
        # _fatal_error(), which closes that connection only.  Asyncio users on
        # Unix expect the selector behaviour, so it is the one kept here.
        try:
            super()._data_received(data, length)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def write(self, data):
        # The idle case without a future: send at once, as the selector
        # transports do.  CPython's proactor write() would make a send
        # future and run its done-callback on the next turn even when the
        # send completed at once (measured: a quarter of the per-request
        # callbacks of an echo server).  Anything else goes the proactor way.
        if (
            self._write_fut is None
            and not self._buffer
            and not self._conn_lost
            and not self._eof_written
            and self._empty_waiter is None
            and type(data) in (bytes, bytearray)
            and data
        ):
            try:
                n = self._sock.send(data, _SEND_NOW)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                n = 0  # let the proactor path meet the error and report it
            if n == len(data):
                return
            data = memoryview(data)[n:]
        super().write(data)

    def close(self):
        # CPython's proactor close() counts the connection as lost at once,
        # so write() drops what comes after it.  On Windows a big WSASend
        # usually completes at once and nothing is pending then; here a
        # write larger than the socket buffer is still in flight, and
        # sslproto writes its close_notify right after close().  So, as the
        # selector transports do: writes after close() are still sent while
        # earlier ones are pending, and the connection ends once all are out.
        if self._closing:
            return
        self._closing = True
        if not self._buffer and self._write_fut is None:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)
        if self._read_fut is not None:
            self._read_fut.cancel()
            self._read_fut = None


class _DatagramTransport(_UnixClose, proactor_events._ProactorDatagramTransport):
    pass


class UringEventLoop(proactor_events.BaseProactorEventLoop):
    """An asyncio event loop whose IO is completions of an io_uring ring."""

    def __init__(self, proactor: UringProactor | None = None) -> None:
        if proactor is None:
            self._closed = True  # for BaseEventLoop.__del__ if the next line raises
            proactor = UringProactor()
        self._signal_handlers: dict = {}
        # fd -> [handle, user_data of the armed poll or None]
        self._readers: dict[int, list] = {}
        self._writers: dict[int, list] = {}
        self._self_reading_scheduled = False
        super().__init__(proactor)

    def call_soon(self, callback, *args, context=None):
        # BaseEventLoop.call_soon in one frame instead of three (a future's
        # done-callbacks come through here: a stream read is one): the
        # checks it makes outside debug mode, then the handle.  In debug mode
        # CPython's own, with its thread and callback checks.
        if self._debug:
            return _created_by_caller(super().call_soon(callback, *args, context=context))
        if self._closed:
            raise RuntimeError("Event loop is closed")
        handle = _Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(self, delay, callback, *args, context=None):
        # BaseEventLoop.call_later + call_at in one frame outside debug mode
        # (uvicorn sets and cancels a keep-alive timer per request): the
        # same checks, the same heap.  In debug mode CPython's own.
        if self._debug or delay is None:
            return _created_by_caller(super().call_later(delay, callback, *args, context=context))
        when = self.time() + delay  # before the closed check, as CPython's order goes
        if self._closed:
            raise RuntimeError("Event loop is closed")
        timer = _TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer

    def call_at(self, when, callback, *args, context=None):
        if self._debug or when is None:
            return _created_by_caller(super().call_at(when, callback, *args, context=context))
        if self._closed:
            raise RuntimeError("Event loop is closed")
        timer = _TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer

    def _run_once(self):
        # BaseEventLoop._run_once (CPython 3.11) with the same steps, in
        # the same order, minus the generic work a hot turn pays for
        # nothing: the clock is read only when there are timers, and a
        # ready callback is run in line (Handle._run's body, here) instead
        # of through one more Python frame.  The timers' clean-up of
        # cancelled handles, the debug path (current handle, slow-callback
        # warning) and a handle class with its own _run are CPython's.
        scheduled = self._scheduled
        if scheduled:
            sched_count = len(scheduled)
            if (
                sched_count > _MIN_SCHEDULED
                and self._timer_cancelled_count / sched_count > _MIN_CANCELLED_FRACTION
            ):
                # Many cancelled timers: rebuild the heap without them.
                new_scheduled = []
                for handle in scheduled:
                    if handle._cancelled:
                        handle._scheduled = False
                    else:
                        new_scheduled.append(handle)
                heapq.heapify(new_scheduled)
                self._scheduled = scheduled = new_scheduled
                self._timer_cancelled_count = 0
            else:
                # Remove cancelled timers from the head of the heap.
                while scheduled and scheduled[0]._cancelled:
                    self._timer_cancelled_count -= 1
                    handle = heapq.heappop(scheduled)
                    handle._scheduled = False

        ready = self._ready
        if ready or self._stopping:
            timeout = 0
        elif scheduled:
            timeout = min(max(0, scheduled[0]._when - self.time()), _MAX_SELECT_TIMEOUT)
        else:
            timeout = None

        event_list = self._selector.select(timeout)
        self._process_events(event_list)
        event_list = None  # Needed to break cycles when an exception occurs.

        if scheduled:
            # Timers that are due join the ready callbacks.
            end_time = self.time() + self._clock_resolution
            while scheduled:
                handle = scheduled[0]
                if handle._when >= end_time:
                    break
                handle = heapq.heappop(scheduled)
                handle._scheduled = False
                ready.append(handle)

        # Only the callbacks ready now: those they schedule wait for the
        # next turn (after the next poll for IO), as in CPython.
        popleft = ready.popleft
        inline = _RUN_INLINE
        for _ in range(len(ready)):
            handle = popleft()
            if handle._cancelled:
                continue
            if self._debug:
                self._run_debug(handle)
            elif handle.__class__ in inline:
                try:
                    handle._context.run(handle._callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _callback_failed(handle, exc)
            else:
                handle._run()
        handle = None  # Needed to break cycles when an exception occurs.

    def _run_debug(self, handle) -> None:
        # BaseEventLoop._run_once's debug branch: time each callback.
        try:
            self._current_handle = handle
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                logger.warning("Executing %s took %.3f seconds", base_events._format_handle(handle), dt)
        finally:
            self._current_handle = None

    def _start_serving(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        # CPython's proactor loop closes the listening socket on any accept
        # error (Windows semantics): one EMFILE and the server is gone for
        # good.  Its selector loops, which Unix programs know, skip an error
        # that concerns only the connection being accepted and, out of
        # descriptors, stop accepting for ACCEPT_RETRY_DELAY, then try again.
        # That is what this loop does; the rest is CPython's loop() as it is.
        def accepted(conn, addr):
            # A connection whose accept completed after server.close() (see
            # _stop_serving) is served too; asyncio's Server asserts it is
            # open when it counts a transport, so this one goes uncounted.
            owner = server if server is None or server._sockets is not None else None
            protocol = protocol_factory()
            if sslcontext is not None:
                self._make_ssl_transport(
                    conn, protocol, sslcontext, server_side=True, extra={"peername": addr}, server=owner,
                    ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
                )  # fmt: skip
            else:
                self._make_socket_transport(conn, protocol, extra={"peername": addr}, server=owner)

        def loop(f=None):
            try:
                if f is not None:
                    try:
                        conn, addr = f.result()
                    except OSError as exc:
                        if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                            self.call_exception_handler(
                                {"message": "socket.accept() out of system resource", "exception": exc,
                                 "socket": trsock.TransportSocket(sock)}
                            )  # fmt: skip
                            self.call_later(constants.ACCEPT_RETRY_DELAY, loop)
                            return
                        if exc.errno not in ACCEPT_SKIP_ERRNOS:
                            raise
                    else:
                        accepted(conn, addr)
                if self.is_closed():
                    return
                f = self._proactor.accept(sock)
            except OSError as exc:
                if sock.fileno() != -1:
                    self.call_exception_handler(
                        {"message": "Accept failed on a socket", "exception": exc,
                         "socket": trsock.TransportSocket(sock)}
                    )  # fmt: skip
                    sock.close()
            except exceptions.CancelledError:
                sock.close()
            else:
                self._accept_futures[sock.fileno()] = f
                f.add_done_callback(loop)

        self.call_soon(loop)

    def _stop_serving(self, sock):
        # CPython cancels the parked accept's future here.  On the ring the
        # kernel may already have accepted a connection whose completion is
        # not reaped yet; with the future cancelled it would be closed, a
        # reset for a client that did nothing wrong (seen in a rolling reload
        # under wrk).  So the future is left to its completion: a connection
        # that came is served, a cancelled accept (ECANCELED) ends the
        # serving loop quietly, its listening socket being closed.
        self._accept_futures.pop(sock.fileno(), None)
        self._proactor._stop_serving(sock)
        sock.close()

    def _make_socket_transport(self, sock, protocol, waiter=None, extra=None, server=None):
        if self._proactor.stream_reader() is not None:
            return RingSocketTransport(self, sock, protocol, waiter, extra, server)
        # No provided-buffer rings (Linux < 5.19): CPython's proactor
        # transport, a future per operation.
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        ssl_protocol = sslproto.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return _DatagramTransport(self, sock, protocol, address, waiter, extra)

    # -- signals, Unix sockets, subprocesses: as unix_events does them -----

    add_signal_handler = _unix.add_signal_handler
    remove_signal_handler = _unix.remove_signal_handler
    _handle_signal = _unix._handle_signal
    _check_signal = _unix._check_signal
    _process_self_data = _unix._process_self_data
    create_unix_connection = _unix.create_unix_connection
    create_unix_server = _unix.create_unix_server
    _make_subprocess_transport = _unix._make_subprocess_transport
    _child_watcher_callback = _unix._child_watcher_callback
    _make_read_pipe_transport = _unix._make_read_pipe_transport
    _make_write_pipe_transport = _unix._make_write_pipe_transport

    def _loop_self_reading(self, f=None):
        # The proactor base drops what it reads from the self-pipe; on Unix
        # those bytes carry the numbers of the signals that arrived.
        if f is not None and f is self._self_reading_future and not f.cancelled() and f.exception() is None:
            data = f.result()
            if data:
                self._process_self_data(data)
        super()._loop_self_reading(f)

    def run_forever(self):
        # The self-pipe read (wake-ups, signal numbers) is started by the
        # first run and then stays armed between runs, unlike the Windows
        # loop that cancels it on each stop: a cancel that races with a
        # completed read would lose a signal number.
        if self._self_reading_future is None and not self._self_reading_scheduled:
            self._self_reading_scheduled = True
            self.call_soon(self._loop_self_reading)
        try:
            super().run_forever()
        finally:
            # Writes staged as quick sends for a turn that will not come:
            # sent now, as a selector loop's write() would have.
            if not self.is_closed():
                self._proactor.unstage_quick()

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        for table in (self._readers, self._writers):
            for handle, _ud in table.values():
                handle.cancel()
            table.clear()
        super().close()
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, skipping signal handlers removal",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )
            self._signal_handlers.clear()

    async def sock_connect(self, sock, address):
        # Resolve first, as the selector loop does: connect() must not block.
        if sock.family == socket.AF_INET or (base_events._HAS_IPv6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self
            )
            _, _, _, _, address = resolved[0]
        return await self._proactor.connect(sock, address)

    # -- readiness callbacks on POLL_ADD -------------------------------------

    # unix_events' pipe transports call the selector loop's private names.
    def _add_reader(self, fd, callback, *args) -> None:
        self._add_watch(self._readers, POLLIN, fd, callback, args)

    def _add_writer(self, fd, callback, *args) -> None:
        self._add_watch(self._writers, POLLOUT, fd, callback, args)

    def _remove_reader(self, fd) -> bool:
        return self._remove_watch(self._readers, fd)

    def _remove_writer(self, fd) -> bool:
        return self._remove_watch(self._writers, fd)

    def add_reader(self, fd, callback, *args) -> None:
        self._add_watch(self._readers, POLLIN, fd, callback, args)

    def add_writer(self, fd, callback, *args) -> None:
        self._add_watch(self._writers, POLLOUT, fd, callback, args)

    def remove_reader(self, fd) -> bool:
        return self._remove_watch(self._readers, fd)

    def remove_writer(self, fd) -> bool:
        return self._remove_watch(self._writers, fd)

    def _add_watch(self, table, events, fd, callback, args) -> None:
        self._check_closed()
        fd = selectors._fileobj_to_fd(fd)
        handle = events_handle(callback, args, self)
        entry = table.get(fd)
        if entry is not None:
            entry[0].cancel()
            entry[0] = handle  # the armed poll now serves the new callback
            return
        entry = [handle, None]
        table[fd] = entry

        def on_ready(res, fd=fd, entry=entry):
            if table.get(fd) is not entry:
                return  # removed, or replaced by a later add_*
            handle = entry[0]
            if handle._cancelled:
                del table[fd]
                return
            self._add_callback(handle)
            if res >= 0 or res == -4:  # ready, or EINTR: wait again
                # Re-armed now, submitted only at the next select(), after
                # this turn's callbacks (this one included) have run:
                # level-triggered, as with a selector.
                self._proactor.poll_rearm(entry[1], fd, events, on_ready)
            else:
                del table[fd]  # EBADF and the like: the fd is gone

        entry[1] = self._proactor.poll_add(fd, events, on_ready)

    def _remove_watch(self, table, fd) -> bool:
        if self.is_closed():
            return False
        fd = selectors._fileobj_to_fd(fd)
        entry = table.pop(fd, None)
        if entry is None:
            return False
        entry[0].cancel()
        self._proactor.poll_cancel(entry[1])
        return True


def events_handle(callback, args, loop):
    return events.Handle(callback, args, loop, None)


class EventLoopPolicy(unix_events._UnixDefaultEventLoopPolicy):
    """The default Unix policy (child watchers included), making
    ``UringEventLoop``\\ s: ``asyncio.set_event_loop_policy(EventLoopPolicy())``."""

    _loop_factory = UringEventLoop

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
