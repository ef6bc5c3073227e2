"""The streams of a WSGI environ: ``wsgi.input`` (the request body as it
arrives, with back-pressure), ``wsgi.errors`` (the server's log) and
``wsgi.file_wrapper``.  Used by wsgi.py; see its docstring."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

log = logging.getLogger("iomodels")

INPUT_HIGH = 256 * 1024  # buffered request body: pause reading the socket above this
INPUT_LOW = 64 * 1024  # ... and resume below this


class ClientDisconnected(OSError):
    """The client went away while the app was reading its body or writing."""


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file in blocks.  Returned as is over
    a real file (a regular file with a fileno), it is not iterated: the
    handler sends the file with ``transport.sendfile`` on every model (the
    kernel copies, wsgi_handler.WsgiHandler._send_file); anything else is
    iterated block by block."""

    def __init__(self, filelike: Any, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        size = self.block_size
        while block := read(size):
            yield block


class ErrorStream:
    """``wsgi.errors``: lines go to the server's log."""

    def write(self, text: str) -> None:
        text = text.rstrip("\n")
        if text:
            log.error("app: %s", text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


ERRORS = ErrorStream()


class InputStream:
    """``wsgi.input``: the request body as it arrives.

    Filled by ``feed``/``finish``/``fail`` (the loop thread, or ``pump`` on the
    app's own thread in the thread mode); read by the app.  ``need_more`` is
    what a read calls when nothing is buffered: wait for the loop (worker
    mode) or recv() (thread mode)."""

    def __init__(self, cond: threading.Condition | None, need_more: Any, drained: Any = None) -> None:
        self._cond = cond
        self._need_more = need_more  # called (with the lock held, if any) when nothing is buffered
        self._drained = drained  # called when the buffer falls to INPUT_LOW (worker mode)
        self._chunks: deque[bytes] = deque()
        self.size = 0  # bytes buffered
        self.eof = False
        self.error: BaseException | None = None

    # ---- the server's side

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.size += len(data)

    # ---- the app's side

    def _take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (-1: all), waiting for the first one."""
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self.eof:
                return b""
            self._need_more()
        chunks = self._chunks
        if limit < 0 or limit >= self.size:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            parts = []
            left = limit
            while left > 0:
                head = chunks[0]
                if len(head) <= left:
                    parts.append(chunks.popleft())
                    left -= len(head)
                else:
                    parts.append(head[:left])
                    chunks[0] = head[left:]
                    left = 0
            data = b"".join(parts)
        self.size -= len(data)
        if self._drained is not None and self.size <= INPUT_LOW:
            self._drained()
        return data

    def _locked(self, func, *args):
        cond = self._cond
        if cond is None:
            return func(*args)
        with cond:
            return func(*args)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._locked(self._read_all)
        if size == 0:
            return b""
        return self._locked(self._read_some, size)

    def _read_all(self) -> bytes:
        parts = []
        while data := self._take(-1):
            parts.append(data)
        return b"".join(parts)

    def _read_some(self, size: int) -> bytes:
        # As a file's read(n): n bytes unless the body ends first.
        parts = []
        while size > 0 and (data := self._take(size)):
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        return self._locked(self._readline, -1 if size is None else size)

    def _readline(self, size: int) -> bytes:
        parts = []
        got = 0
        while size < 0 or got < size:
            data = self._take(-1 if size < 0 else size - got)
            if not data:
                break
            end = data.find(b"\n")
            if end >= 0:
                rest = data[end + 1 :]
                if rest:  # give back what follows the line
                    self._chunks.appendleft(rest)
                    self.size += len(rest)
                data = data[: end + 1]
                parts.append(data)
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        while line := self.readline():
            yield line


class EmptyInput:
    """``wsgi.input`` of a request without a body: no state, one for all."""

    __slots__ = ()
    size = 0
    # What the server sets on a real InputStream is ignored here.
    eof = property(lambda self: True, lambda self, value: None)
    error = property(lambda self: None, lambda self, value: None)

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self):
        return iter(())


EMPTY_INPUT = EmptyInput()
