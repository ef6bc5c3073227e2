"""The protocol API every model drives: shaped like asyncio's, so that one
protocol object runs on every model, the blocking ones and asyncio/uvloop included.

The contract is a state machine (CPython asyncio/protocols.py):

    start -> connection_made [-> data_received*] [-> eof_received?] -> connection_lost -> end

- ``connection_made(transport)`` is called exactly once, first.
- ``data_received(data)`` is called with the bytes as they arrive (any chunking).
- ``eof_received()`` is called at most once, when the peer half-closes.  If it
  returns a false value the transport flushes what is pending and closes;
  a true value keeps the connection open (the protocol then closes it).
- ``connection_lost(exc)`` is called exactly once, last: ``exc`` is None for a
  clean close, else the exception that ended the connection.
- ``pause_writing()`` / ``resume_writing()``: the transport's pending output
  went above the high-water mark / back below the low-water mark.  The default
  reacts by pausing reading: back-pressure without any work in the protocol.

A callback that raises closes its own connection (traceback logged); nothing else.

Expensive work goes through ``transport.run_in_worker(func, *args, done=cb)``:
``func`` runs on a worker thread, ``cb(future)`` back on the connection's
loop thread (see core/offload.py).

A file goes out through the kernel with ``transport.sendfile(file, offset,
count, done=cb)``: os.sendfile on the readiness loops and the blocking
models, splices through the ring on io_uring, the loop's own sendfile on
asyncio and aio (uvloop has none: read + write there).  Its bytes do not
enter the process (but on uvloop).  The contract, on every model:

- Order: the file goes out after every byte written before the call.  Bytes
  written after the call, before ``done``, go out after the whole file on
  our own loops and the blocking models; on asyncio/uvloop/aio write again
  only after ``done`` (asyncio refuses a write during its sendfile).  The
  HTTP protocol never writes meanwhile: for it, one rule everywhere.
- ``done(future)`` is called exactly once, on the connection's thread:
  before sendfile() returns on the blocking models, never inside the call on
  the event loops.  ``future.result()`` is the count sent (less than
  ``count`` if the file was shorter), or raises: the error that ended the
  connection (the client went away: a socket error ends the connection as
  a failed write() does; the idle timeout's TimeoutError), or
  ConnectionAbortedError after close()/abort() stopped it.  It comes even
  when the connection closes first: before connection_lost on the readiness
  loops, possibly after it on io_uring and asyncio (the kernel holds the
  file until the cancelled operations are in).
- The file: ``file.fileno()`` (or an fd) at an explicit offset: its position
  is not used (asyncio's loop.sendfile leaves it after what was sent).  Keep
  it open until ``done``; close it then (the kernel may read it until then).
- close() flushes the file and what was written after it, then closes;
  abort() stops the transfer.
- Nothing of the file is buffered in memory: the kernel takes it as the
  socket drains (the socket's own flow control), and each piece that goes
  counts as progress for the idle timeout.  Where a piece is large (a
  splice step of up to 1 MiB on io_uring, a 1 MiB loop.sendfile() on
  asyncio and aio), the idle sweep also asks TCP how many bytes the peer
  has acknowledged (tcp_bytes_acked), so that a reader slower than a piece
  per timeout period but still reading is not cut.
  One transfer at a time per transport (another call before ``done``
  raises RuntimeError).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import struct
from typing import Any
from typing import Protocol as _TypingProtocol

# Flow control (bytes of pending output).  Above HIGH_WATER the server stops
# reading from that connection; below LOW_WATER it resumes.  The figures are
# the project's contract (see README): a peer that never reads costs the
# server at most HIGH_WATER plus one recv() of memory.
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024


class Transport(_TypingProtocol):
    """What a protocol may call; every model's transport provides it."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...
    def get_write_buffer_size(self) -> int: ...
    def run_in_worker(self, func: Any, *args: Any, done: Any = None) -> None: ...
    def sendfile(self, file: Any, offset: int = 0, count: int | None = None, *, done: Any = None) -> None:
        """Send ``count`` bytes of ``file`` from ``offset`` (None: to its end)
        through the kernel, after what was written before; ``done(future)``
        when the transport is done with the file (see the module docstring)."""
        ...

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close the connection after ``seconds`` without progress, counted from
        this call: no byte arrives from the peer and none of the pending output
        leaves.  ``connection_lost`` then gets a TimeoutError (a protocol can
        tell it from a clean close).  None: the server's default
        (``--idle-timeout``, ``config.idle_timeout_s``); 0: never.  The check
        runs a quarter of the timeout apart (at most 1 s) on the event loops,
        so the close comes between ``seconds`` and 1.25 x ``seconds`` later
        (plus 1 s at most for timeouts over 4 s); the blocking models use the
        kernel's SO_RCVTIMEO / SO_SNDTIMEO, exact per recv()/send()."""
        ...


def file_span(file: Any, offset: int, count: int | None) -> tuple[int, int]:
    """sendfile()'s arguments -> (fd, count); ``count`` None: to the end of
    the file (fstat).  Raises ValueError for a negative offset or count, and
    what fileno()/fstat raise for something that is not a file."""
    fd = file if isinstance(file, int) else file.fileno()
    if offset < 0:
        raise ValueError(f"sendfile offset must be >= 0, not {offset!r}")
    if count is None:
        count = max(0, os.fstat(fd).st_size - offset)
    elif count < 0:
        raise ValueError(f"sendfile count must be >= 0, not {count!r}")
    return fd, count


# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, a __u64 at byte 120
# (Linux 4.1+); a shorter answer means an older kernel.
_TCP_INFO_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_AT = 120
_TCP_INFO_SIZE = 256


def tcp_bytes_acked(sock: socket.socket) -> int | None:
    """How many bytes the peer of this TCP socket has acknowledged so far,
    or None where the kernel does not say (not TCP, not Linux, before 4.1).
    The idle sweep's measure of a peer that reads while a large sendfile
    piece is in the kernel: it grows only as the peer's window opens."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, AttributeError):  # a Unix socket; no TCP_INFO on this platform
        return None
    if len(info) < _BYTES_ACKED_AT + 8:
        return None
    return _TCP_INFO_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0]


def file_aborted() -> ConnectionAbortedError:
    """What ``done`` gets when the connection closed before the file went out."""
    return ConnectionAbortedError("the connection closed before the file was sent")


def completed(sent: int, exc: BaseException | None = None) -> concurrent.futures.Future:
    """The future sendfile() hands to ``done``: ``sent`` bytes, or ``exc``."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    if exc is None:
        future.set_result(sent)
    else:
        future.set_exception(exc)
    return future


class Protocol:
    """Base class for protocols; compatible with ``asyncio.Protocol``."""

    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None  # flush pending output, then close

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()
