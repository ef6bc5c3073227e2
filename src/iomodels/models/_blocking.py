"""The worker shared by the blocking models: blocking, threads, processes, threadpool.

They differ only in *who* runs :meth:`BlockingServer.serve_connection`: the
main thread (blocking), a new thread (threads), a forked child (processes) or
one of N pool threads (threadpool).  The worker is the seed's loop made
correct: recv() -> protocol.data_received() -> transport.write() = sendall();
transport.sendfile() is os.sendfile() on the same blocking socket.

Everything is a true blocking syscall: recv(), sendall() and accept() sleep in
the kernel until they can complete, with no poll() hidden underneath.  That
is why the idle timeout is the kernel's SO_RCVTIMEO/SO_SNDTIMEO, not
socket.settimeout() (which makes the fd non-blocking and polls in CPython).

Back-pressure needs no buffer: write() returns only when the kernel has taken
every byte, so a peer that does not read stops its worker inside sendall(),
and a worker in sendall() does not recv().

Stopping, without a poller to wake: the signal handler (run by CPython in the
main thread) shuts the listening socket down, which makes every accept()
fail with EINVAL (Linux), and shuts the read side of each connection down,
which makes a blocked recv() return b"".  A worker blocked in sendall()
keeps flushing until the flush deadline (the stop budget less what the exit
needs, core/server.py), when SIGALRM (setitimer) shuts its socket down
completely and sendall() fails with EPIPE.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import threading
import time
from typing import Any

from iomodels.core.offload import run_inline
from iomodels.core.protocol import completed, file_span
from iomodels.core.server import (
    ACCEPT_RESOURCE_ERRNOS,
    ACCEPT_RETRY_DELAY_S,
    ACCEPT_SKIP_ERRNOS,
    RECV_SIZE,
    BaseServer,
    StopSignals,
    configure_accepted,
    release_listener,
)

log = logging.getLogger("iomodels")

PAUSE_CHECK_S = 0.05  # how often a worker paused by its protocol looks again
# A listener shared with other worker processes (--shared-listener) cannot be
# shut down to wake our accept(): that would stop it for them too.  Its
# SO_RCVTIMEO, which Linux applies to accept(), wakes a blocked accept() this
# often to look at the stop flags; accept() itself stays one blocking call.
SHARED_ACCEPT_WAKE_S = 0.2
# sendfile(): bytes per os.sendfile() call.  A blocking call returns when all
# of it is queued, so this bounds only how long one call waits on a slow peer.
SENDFILE_CALL = 8 * 1024 * 1024


class BlockingTransport:
    """The transport of a blocking worker: write() is sendall(), nothing is buffered.

    Call its methods from the worker's own thread (the protocol's callbacks run there).
    """

    __slots__ = ("_sock", "_sendall", "_peername", "_closing", "_paused", "_default_idle_s", "error",
                 "sendfile_calls")  # fmt: skip

    def __init__(self, sock: socket.socket, peername: Any, default_idle_s: float = 0.0) -> None:
        self._sock = sock
        self._default_idle_s = default_idle_s  # --idle-timeout, what set_idle_timeout(None) restores
        self._sendall = sock.sendall
        self._peername = peername
        self._closing = False
        self._paused = False
        self.error: BaseException | None = None  # why the connection ended, if not cleanly
        self.sendfile_calls = 0  # os.sendfile() calls made (statistics, tests)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        try:
            self._sendall(data)  # blocks until the kernel has taken every byte
        except BlockingIOError:  # SO_SNDTIMEO expired: no progress for the idle timeout
            self.error = TimeoutError("no progress while sending (idle timeout)")
            self._closing = True
        except OSError as exc:  # reset, broken pipe: this peer only
            self.error = exc
            self._closing = True

    def close(self) -> None:
        self._closing = True  # nothing is buffered: the worker closes the socket

    def abort(self) -> None:
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername
        if name == "socket":
            return self._sock
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def set_idle_timeout(self, seconds: float | None) -> None:
        """The kernel's own: SO_RCVTIMEO (no byte arrives) and SO_SNDTIMEO (no
        byte leaves) for ``seconds``; None: the server's default, 0: never."""
        if seconds is None:
            seconds = self._default_idle_s
        elif seconds < 0:
            raise ValueError(f"idle timeout must be >= 0 seconds, not {seconds!r}")
        set_socket_timeouts(self._sock, seconds)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None, *, done: Any = None) -> None:
        """os.sendfile() on the blocking socket until the file is out (what
        write() is to sendall()): returns when the kernel has taken it all,
        having called ``done`` (core/protocol.py: the contract).  A peer that
        does not read blocks this thread; SO_SNDTIMEO (the idle timeout)
        bounds each call, as for write()."""
        fd, left = file_span(file, offset, count)
        sent = calls = 0
        error: BaseException | None = None
        if self._closing:
            error = ConnectionAbortedError("sendfile: the transport is closing")
        while left and error is None:
            try:
                n = os.sendfile(self._sock.fileno(), fd, offset + sent, min(left, SENDFILE_CALL))
            except BlockingIOError:  # SO_SNDTIMEO expired: no progress for the idle timeout
                error = self.error = TimeoutError("no progress while sending a file (idle timeout)")
                self._closing = True
                break
            except OSError as exc:  # reset, broken pipe (this peer only), or the file's own error
                error = self.error = exc
                self._closing = True
                break
            calls += 1
            if not n:
                break  # the file ended early: done gets the short count
            sent += n
            left -= n
        self.sendfile_calls += calls
        log.debug("sendfile to %s: %d bytes by os.sendfile in %d calls%s", self._peername, sent, calls,
                  f" ({error!r})" if error is not None else "")  # fmt: skip
        if done is not None:
            done(completed(sent, error))

    def run_in_worker(self, func: Any, *args: Any, done: Any = None) -> None:
        """Inline: this connection's thread is already its own worker (core/offload.py)."""
        future = run_inline(func, *args)
        if done is not None and not self._closing:
            done(future)


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def set_socket_timeouts(sock: socket.socket, seconds: float) -> None:
    """A blocking recv()/send() that waits ``seconds`` fails with EAGAIN (0: never)."""
    value = _timeval(seconds)  # a zero timeval means "no timeout" to the kernel
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    except OSError:  # the peer may already have gone: the next recv() says so
        pass


class BlockingServer(BaseServer):
    """Accept loop, worker and stop logic; subclasses decide who runs the worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = False
        self._active: dict[int, socket.socket] = {}  # id(transport) -> socket being served
        self._fd_freed = threading.Event()
        self._exhausted_logged = False
        self._signals: StopSignals | None = None
        self._accept_closed = False  # stop_accepting(): accept no more, serve on
        if self.config.shared_listener:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(SHARED_ACCEPT_WAKE_S))

    # ---- the worker

    def serve_connection(self, sock: socket.socket, peername: Any) -> None:
        """Serve one connection to its end, blocking; never raises (but SystemExit)."""
        configure_accepted(sock)
        idle_s = self.config.idle_timeout_s
        # An accepted socket inherits the listener's SO_RCVTIMEO (a shared one has it): reset it.
        if idle_s > 0 or self.config.shared_listener:
            set_socket_timeouts(sock, idle_s)
        transport = BlockingTransport(sock, peername, idle_s)
        key = id(transport)
        self._active[key] = sock
        protocol = self.protocol_factory()
        exc: BaseException | None = None
        try:
            protocol.connection_made(transport)
            recv = sock.recv
            data_received = protocol.data_received
            while not transport._closing and not self._stopping:
                if transport._paused:
                    time.sleep(PAUSE_CHECK_S)
                    continue
                try:
                    data = recv(RECV_SIZE)  # phase 1 (wait) and phase 2 (copy), blocked
                except BlockingIOError:  # SO_RCVTIMEO expired
                    transport.error = TimeoutError("no byte arrived (idle timeout)")
                    break
                except OSError as error:
                    transport.error = error
                    break
                if data:
                    data_received(data)
                    continue
                if self._stopping:
                    break  # our own shutdown(SHUT_RD), not the peer's EOF
                if not protocol.eof_received():
                    break
                while not transport._closing and not self._stopping:
                    time.sleep(PAUSE_CHECK_S)  # the protocol keeps the half-closed connection
            exc = transport.error
            if exc is not None:
                log.debug("connection %s lost: %r", peername, exc)
        except Exception as error:
            log.error(
                "protocol %s raised; closing connection %s",
                type(protocol).__name__,
                peername,
                exc_info=error,
            )
            exc = error
        finally:
            self._active.pop(key, None)
            sock.close()
            try:
                protocol.connection_lost(exc)
            except Exception as error:
                log.error("protocol connection_lost raised", exc_info=error)
            self._fd_freed.set()

    # ---- accepting

    def accept_loop(self, handle: Any, count_active: Any = None) -> None:
        """accept() until stopped, handing each connection to ``handle``."""
        accept = self.listener.accept
        limit = self.config.max_connections
        count_active = count_active or (lambda: len(self._active))
        while not self._stopping:
            if self._accept_closed:
                while not self._stopping:  # a retiring worker: serve on, accept nothing
                    time.sleep(PAUSE_CHECK_S)
                return
            try:
                sock, peername = accept()  # blocks in the kernel until a client connects
            except BlockingIOError:  # SO_RCVTIMEO of a shared listener: look at the flags
                continue
            except OSError as exc:
                if self._stopping or self._accept_closed:
                    continue  # the listener was shut down to wake us
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    self._wait_for_descriptors(exc)
                    continue
                if exc.errno in ACCEPT_SKIP_ERRNOS:
                    continue
                raise
            if self._stopping:
                sock.close()
                return
            if limit and count_active() >= limit:
                sock.close()  # --max-connections: accepted and closed at once
                continue
            handle(sock, peername)

    def _wait_for_descriptors(self, exc: OSError) -> None:
        # Out of descriptors: the client stays in the backlog; accepting again
        # at once would spin.  Wait for a connection to close, or retry later.
        if not self._exhausted_logged:
            log.warning("accept: %s; waiting for a descriptor to free up", exc.strerror)
            self._exhausted_logged = True
        self._fd_freed.clear()
        self._fd_freed.wait(ACCEPT_RETRY_DELAY_S)
        if self._fd_freed.is_set():
            self._exhausted_logged = False

    # ---- stopping (these run in signal handlers, in the main thread: no locks)

    def stop_accepting(self, release: bool = False) -> None:
        self._accept_closed = True
        if release:
            release_listener(self.listener)  # wakes every accept() with EINVAL

    def wake_accepts(self) -> None:
        """Make every accept() return: shut the listener down (EINVAL), unless
        other processes accept on it too (SO_RCVTIMEO wakes ours, see above)."""
        if not self.config.shared_listener:
            release_listener(self.listener)

    def request_stop(self) -> None:
        self.note_stop_signal()
        self._stopping = True
        self.wake_accepts()
        for sock in list(self._active.values()):
            try:
                sock.shutdown(socket.SHUT_RD)  # wakes a blocked recv() with b""
            except OSError:
                pass
        flush_s = self.flush_deadline - time.monotonic()
        if flush_s > 0:
            signal.setitimer(signal.ITIMER_REAL, flush_s)  # 0 would disarm it, not fire it
        else:
            self.abort_all()

    def abort_all(self) -> None:
        for sock in list(self._active.values()):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # a blocked sendall() fails with EPIPE
            except OSError:
                pass

    def stop_now(self) -> None:
        self._stopping = True
        self.wake_accepts()
        self.abort_all()

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self._active:
            log.info("graceful timeout: aborting %d connection(s)", len(self._active))
        self.abort_all()

    # ---- lifecycle

    def serve_forever(self) -> None:
        previous_alarm = signal.signal(signal.SIGALRM, self._on_alarm)
        self._signals = StopSignals(self.request_stop, self.stop_now).install()
        try:
            self.announce()
            self.run()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._signals.restore()
            signal.signal(signal.SIGALRM, previous_alarm)

    def run(self) -> None:
        raise NotImplementedError

    def join_threads(self, threads: list[threading.Thread]) -> None:
        """Wait for worker threads, until the stop deadline: the SIGALRM at the
        flush deadline makes them finish.  A thread still running then is a
        daemon; it does not hold the exit."""
        deadline = self.stop_deadline
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = sum(thread.is_alive() for thread in threads)
        if alive:
            log.warning("%d worker thread(s) still running at exit", alive)
