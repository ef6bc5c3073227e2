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
"""

from __future__ import annotations

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
