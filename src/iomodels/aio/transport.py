"""``RingSocketTransport``: a TCP / Unix stream transport driven by ring completions.

CPython's proactor transports cost a future per read: the recv completes,
the future's done-callback is scheduled with ``call_soon``, it runs on the
next turn, makes the next recv future and only then calls the protocol
(measured: about half of an echo request's server CPU, docs/aio.md).  This
transport has no future at all on its hot path, as uvloop's handles have
none over libuv:

* **Reading.** One recv stays armed per connection: a multishot RECV (6.0+)
  into the loop's provided-buffer pool (``BufferRing``), whose every
  completion is a plain callback that ``UringProactor.select`` calls from
  its reap loop (``UringProactor.recv_stream``).  The data is copied out of
  the pool (one ``bytes`` copy, the one a ``recv()`` makes) and the buffer
  goes back to the kernel at the next enter; the protocol's
  ``data_received`` runs right there, or, for a ``BufferedProtocol``, the
  bytes are copied from the pool into ``get_buffer()``'s buffer.  A
  completion without ``F_MORE`` ends the request (EOF, an error, ``-ENOBUFS``
  when the pool ran dry in a turn, a cancel); it is re-armed if reading
  should go on.  Where multishot is missing the same one-shot recv is
  re-armed after each completion.
* **Pausing.** ``pause_reading`` cancels the armed recv; what the kernel had
  already received comes in completions until the cancel's own, and is
  kept, in order (``_stash``), with an EOF or an error that follows it.
  ``resume_reading`` delivers the stash on the next turn and re-arms once
  it is empty and the old request is over: at most one recv per connection
  is ever in the kernel, so bytes cannot be reordered.
* **Writing.** As the selector transports and uvloop do: when nothing is
  pending, ``write`` sends at once (``send(MSG_DONTWAIT | MSG_NOSIGNAL)``);
  what does not fit goes to the ring as one SEND of everything queued (one
  in flight, a short send continued where it stopped), with the write-buffer
  limits calling ``pause_writing`` / ``resume_writing``.  ``close`` waits for
  the queued bytes, ``abort`` cancels them; ``write_eof`` shuts down the
  write side once they are out.

Exceptions from protocol callbacks close that connection only
(``_fatal_error``), as the selector transports do.  The rest of the
surface (``get_extra_info``, ``set_protocol``, sendfile's empty waiter,
``start_tls``) is the selector transport's.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import warnings
from asyncio import base_events, constants, futures, protocols, transports, trsock
from asyncio.log import logger

from iomodels import uring
from iomodels.uring.buffers import buffer_span

_F_MORE = uring.IORING_CQE_F_MORE
_F_BUFFER = uring.IORING_CQE_F_BUFFER
_BUFFER_SHIFT = uring.IORING_CQE_BUFFER_SHIFT
_SEND_NOW = int(socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
_MSG_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_ECANCELED = errno.ECANCELED
_REARM = frozenset({-errno.ENOBUFS, -errno.EAGAIN, -errno.EINTR, -errno.ECANCELED})
_SEND_AGAIN = frozenset({-errno.EAGAIN, -errno.EINTR})
# A write up to this size may be a quick send; a bigger one is sent at once
# (it would not fit a socket buffer in one go anyway).
_QUICK_MAX = 64 * 1024


def _error(res: int) -> OSError:
    return OSError(-res, os.strerror(-res))


class RingSocketTransport(transports._FlowControlMixin, transports.Transport):
    """A stream socket's transport on the ring (see the module docstring)."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _sock = None  # __del__ may run on a half-built transport

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        super().__init__(extra, loop)
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._sock = sock
        self._sock_fd = sock.fileno()
        proactor = loop._proactor
        self._proactor = proactor
        self._stream = proactor.stream_reader()  # (arm, cancel, pool memory, pool view, size, recycle)
        # The three that _on_recv's hot path needs, as attributes of their own.
        self._pool_mem = self._stream[2]
        self._pool_size = self._stream[4]
        self._recycle = self._stream[5]
        self._protocol_connected = False
        self._buffered = False
        self.set_protocol(protocol)
        self._server = server
        # Reading.
        self._recv_ud = 0  # the armed recv's user_data (0: none in the kernel)
        self._recv_cancelling = False
        self._paused = False
        self._read_eof = False  # the peer's EOF came: never re-armed
        self._stash: list = []  # received while paused: bytes, b"" (EOF) or an OSError
        # Writing.
        self._buffer: collections.deque[bytes] = collections.deque()  # not yet handed to the kernel
        self._buffer_size = 0  # written and not known to be sent (queued + in flight)
        self._send_ud = 0
        self._send_data = b""  # the SEND in flight: its bytes, kept until its completion
        self._send_addr = 0
        self._send_off = 0
        self._eof = False  # write_eof() was called
        self._quick_data = None  # the last quick send's bytes (see _quick_pending)
        self._quick_stamp = 0
        # More writes staged in the same turn: all the parts (joined once,
        # just before the enter: _join_quick) and their size.
        self._quick_parts = None
        self._quick_size = 0
        self._waiting_settle = False
        quick = proactor.quick_sender(self) if proactor._quick is not False else None
        self._quick_ud, self._quick_sqe = quick if quick is not None else (0, None)
        self._empty_waiter = None
        # Life.
        self._conn_lost = 0
        self._closing = False
        self._called_connection_lost = False
        if server is not None:
            server._attach()
        base_events._set_nodelay(sock)
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._arm_recv)  # only once connection_made() has run
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        info.append("read=" + ("armed" if self._recv_ud else "idle"))
        info.append(f"write=<{'sending' if self._send_ud else 'idle'}, bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # -- protocol and state ---------------------------------------------------

    def set_protocol(self, protocol) -> None:
        self._buffered = isinstance(protocol, protocols.BufferedProtocol)
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self):
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._stop_reading()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._stash:
            self._loop.call_soon(self._deliver_stash)
        else:
            self._arm_recv()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    # -- reading ---------------------------------------------------------------

    def _arm_recv(self) -> None:
        if self._recv_ud or self._paused or self._closing or self._read_eof or self._stash:
            return
        self._recv_cancelling = False
        self._recv_ud = self._stream[0](self._sock_fd, self._on_recv)

    def _stop_reading(self) -> None:
        if self._recv_ud and not self._recv_cancelling:
            self._recv_cancelling = True
            self._stream[1](self._recv_ud)

    def _on_recv(self, res: int, flags: int) -> None:
        """A completion of the armed recv, from the proactor's reap loop."""
        if flags & _F_MORE:
            if res > 0 and not (self._closing or self._paused or self._stash or self._buffered):
                # The hot path, first and alone (an echo request takes it every
                # time): data for a plain protocol, the multishot recv still
                # armed.  The same steps as the general case below, fewer tests.
                bid = flags >> _BUFFER_SHIFT
                start = bid * self._pool_size
                data = self._pool_mem[start : start + res]  # an mmap slice: one bytes copy
                self._recycle(bid)
                try:
                    self._protocol.data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
                return
        else:
            self._recv_ud = 0  # the request is over
        if res > 0:
            _arm, _cancel, mem, view, size, recycle = self._stream
            start = (flags >> _BUFFER_SHIFT) * size
            if self._closing:
                recycle(flags >> _BUFFER_SHIFT)
                return  # closing: dropped, as a selector transport stops reading
            if self._paused or self._stash:
                self._stash.append(mem[start : start + res])
                recycle(flags >> _BUFFER_SHIFT)
            elif self._buffered:
                # Released on the way out even if a traceback keeps the
                # frame: a live slice would keep the pool from being unmapped.
                with view[start : start + res] as chunk:
                    self._feed_buffered(chunk)
                recycle(flags >> _BUFFER_SHIFT)
            else:
                data = mem[start : start + res]  # an mmap slice: one bytes copy
                recycle(flags >> _BUFFER_SHIFT)
                try:
                    self._protocol.data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
                    return
            if not self._recv_ud:
                self._arm_recv()
            return
        if flags & _F_BUFFER:  # not expected without data; give it back anyway
            self._stream[5](flags >> _BUFFER_SHIFT)
        if self._closing:
            return
        if res == 0:  # EOF (also ends a multishot recv)
            # Through the stash and the next turn, not at once: the data
            # that came before it has been handed over this turn, and the
            # program gets a turn to look at the connection before it is
            # closed (CPython's tests read extra info then; the proactor
            # and selector transports both give that turn).
            self._read_eof = True
            self._stash.append(b"")
            if not self._paused and len(self._stash) == 1:
                self._loop.call_soon(self._deliver_stash)
            return
        if res in _REARM:
            # A cancel by pause_reading() (re-armed only if resumed since),
            # or the pool ran dry this turn (refilled at the next enter).
            if not self._recv_ud:
                self._arm_recv()
            return
        exc = _error(res)
        if self._paused or self._stash:
            self._stash.append(exc)
        else:
            self._fatal_error(exc, "Fatal read error on socket transport")

    def _feed_buffered(self, data) -> None:
        """Copy ``data`` into the BufferedProtocol's buffers, as many
        get_buffer() / buffer_updated() rounds as it takes."""
        protocol = self._protocol
        n = len(data)
        off = 0
        while off < n:
            try:
                buf = protocol.get_buffer(n - off)
                size = len(buf)
                if not size:
                    raise RuntimeError("get_buffer() returned an empty buffer")
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                return
            k = min(size, n - off)
            try:
                with memoryview(buf) as dst:
                    dst.cast("B")[:k] = data[off : off + k]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                return
            off += k
            try:
                protocol.buffer_updated(k)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
                return
            if self._closing:
                return

    def _deliver_stash(self) -> None:
        stash = self._stash
        while stash and not (self._paused or self._closing):
            item = stash.pop(0)
            if type(item) is bytes:
                if not item:
                    self._on_eof()
                elif self._buffered:
                    self._feed_buffered(item)
                else:
                    try:
                        self._protocol.data_received(item)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
                        return
            else:
                self._fatal_error(item, "Fatal read error on socket transport")
        if not stash:
            self._arm_recv()

    def _on_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -- writing ---------------------------------------------------------------

    def write(self, data) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
            data = bytes(data)  # the caller may reuse its buffer once write() returns
        if self._eof or self._empty_waiter is not None or self._conn_lost or not data:
            self._write_refused(data)  # one test for four rare cases
            return
        if self._buffer_size:  # queued or in flight already: behind those
            self._buffer.append(data)
            self._buffer_size += len(data)
            if not self._send_ud and not self._quick_pending():
                self._start_send()
            self._maybe_pause_protocol()
            return
        proactor = self._proactor
        quick = self._quick_data
        if quick is not None:
            stamp = self._quick_stamp
            if stamp == proactor._batch:
                # Staged this turn, not in the SQ yet: one send with this.
                # The parts are joined once, before the enter: adding them
                # up one by one copied a 64 KiB message, read as four 16 KiB
                # chunks, 2.5 times over (160 KiB).
                parts = self._quick_parts
                size = (len(quick) if parts is None else self._quick_size) + len(data)
                if size <= _QUICK_MAX:
                    if parts is None:
                        self._quick_parts = [quick, data]
                        proactor._joining.append(self)
                    else:
                        parts.append(data)
                    self._quick_size = size
                    return
            elif stamp < proactor._settled:
                quick = None  # it went out (_quick_data is replaced below)
            if quick is not None:
                # Submitted (or staged, and this would make it too big):
                # these bytes wait for it to settle, then go out in order.
                self._buffer.append(data)
                self._buffer_size += len(data)
                self._wait_settle()
                self._maybe_pause_protocol()
                return
        if len(data) <= _QUICK_MAX and self._quick_sqe is not None and self._loop._thread_id is not None:
            # Idle, the loop running: staged, and sent inside this turn's
            # enter, with the other connections' (no system call of its own).
            self._quick_data = data
            self._quick_stamp = proactor._batch
            proactor._staged[self._quick_ud] = (self._quick_sqe, data)
            return
        self._quick_data = None
        self._send_now(data)

    def _write_refused(self, data: bytes) -> None:
        """write() after write_eof(), during sendfile, of nothing, or after
        the connection was lost: in that order, as the selector transports
        check them."""
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            logger.warning("socket.send() raised exception.")
        self._conn_lost += 1

    def _send_now(self, data: bytes) -> None:
        """Idle: send at once, as the selector transports and uv_try_write
        do; what does not fit goes to the ring."""
        try:
            n = self._sock.send(data, _SEND_NOW)
        except (BlockingIOError, InterruptedError):
            n = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on socket transport")
            return
        if n == len(data):
            return
        if n:
            data = data[n:]
        self._buffer.append(data)
        self._buffer_size += len(data)
        if not self._send_ud:
            self._start_send()
        self._maybe_pause_protocol()

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    # Quick sends (UringProactor.quick_sender).  A transport's quick send is
    # *staged* (``_quick_stamp == proactor._batch``: a second write joins
    # it), then *submitted* by the turn's enter, then *settled* once that
    # enter's completions are dispatched (``_quick_stamp <
    # proactor._settled``): it went out whole (no completion), or fell short
    # and ``_on_quick_failed`` queued the rest as an ordinary send.  Until it
    # settles, writes queue behind it and close / write_eof / sendfile wait
    # (``_wait_settle``: the proactor calls ``_quick_settled`` after the
    # batch).  ``_quick_data`` keeps the bytes the kernel reads; it is
    # dropped lazily, at the next write, so that the hot path never needs a
    # call per settled send.

    def _join_quick(self) -> None:
        """The writes staged this turn become one quick send (the proactor
        calls this before it queues the turn's quick sends)."""
        parts = self._quick_parts
        if parts is not None:
            self._quick_parts = None
            data = self._quick_data = b"".join(parts)
            staged = self._proactor._staged
            if self._quick_ud in staged:
                staged[self._quick_ud] = (self._quick_sqe, data)

    def _quick_pending(self) -> bool:
        return self._quick_data is not None and self._quick_stamp >= self._proactor._settled

    def _wait_settle(self) -> None:
        if not self._waiting_settle:
            self._waiting_settle = True
            self._proactor._waiting.append(self)

    def _quick_settled(self) -> None:
        self._waiting_settle = False
        if self._quick_data is not None:
            if self._quick_stamp >= self._proactor._settled:
                self._wait_settle()  # staged during the batch: the next one
                return
            self._quick_data = None
        if self._conn_lost:
            return
        if self._buffer and not self._send_ud:
            if self._buffer_size <= _QUICK_MAX and self._loop._thread_id is not None:
                # What queued behind it becomes the next quick send (a
                # client that answers at once makes this every fourth
                # request of an echo: measured, no extra SEND completion).
                buffer = self._buffer
                data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                self._buffer_size = 0
                proactor = self._proactor
                self._quick_data = data
                self._quick_stamp = proactor._batch
                proactor._staged[self._quick_ud] = (self._quick_sqe, data)
                self._maybe_resume_protocol()
                if self._protocol_paused:
                    # Still above the low-water mark with this send: only
                    # its settling can resume the protocol, so ask to hear
                    # of it (a paused protocol writes nothing that would).
                    self._wait_settle()
                return
            self._start_send()
            self._maybe_pause_protocol()
        elif not self._buffer_size:
            self._write_drained()

    def _closing_after_write(self) -> bool:
        # close() with bytes pending counts the connection as lost only
        # once they are out (as the selector transports do).
        return self._closing and not self._called_connection_lost and self._conn_lost == 0

    def _on_quick_failed(self, res: int) -> None:
        """The quick send fell short (``res`` bytes went), or failed."""
        data = self._quick_data
        self._quick_data = None
        if data is None or self._conn_lost:
            return
        if res >= 0 or res in _SEND_AGAIN:
            rest = data[res:] if res > 0 else data
            self._buffer.appendleft(rest)
            self._buffer_size += len(rest)
            if not self._send_ud:
                self._start_send()
            self._maybe_pause_protocol()
            return
        self._write_failed(_error(res))

    def _send_staged_now(self) -> None:
        """The loop stops with this transport's quick send staged (already
        taken out of the proactor's staged table): send it the ordinary way."""
        self._join_quick()
        data = self._quick_data
        self._quick_data = None
        if data is not None and not self._conn_lost:
            buffered = list(self._buffer)
            self._buffer.clear()
            self._buffer_size = 0
            self._send_now(data)
            for chunk in buffered:
                self.write(chunk)
        if self._closing_after_write() and not self._buffer_size and not self._send_ud:
            # close() waited for this send: the connection ends at the next turn.
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def _start_send(self) -> None:
        """Hand everything queued to the kernel as one SEND."""
        buffer = self._buffer
        data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        addr, _n, _keeper = buffer_span(data, False, 0, None)  # bytes: its own storage
        self._send_data = data
        self._send_addr = addr
        self._send_off = 0
        self._send_ud = self._proactor.send_stream(self._sock_fd, addr, len(data), self._on_sent)

    def _on_sent(self, res: int, flags: int) -> None:
        self._send_ud = 0
        if self._conn_lost:
            self._send_data = b""  # aborted: the kernel is done with the bytes now
            return
        if res in _SEND_AGAIN:
            res = 0
        elif res < 0:
            self._send_data = b""
            self._write_failed(_error(res))
            return
        self._send_off += res
        self._buffer_size -= res
        left = len(self._send_data) - self._send_off
        if left > 0:  # short: continue where it stopped
            self._send_ud = self._proactor.send_stream(
                self._sock_fd, self._send_addr + self._send_off, left, self._on_sent
            )
            return
        self._send_data = b""
        if self._buffer:
            self._start_send()
        self._maybe_resume_protocol()  # may write more
        if not self._buffer_size:
            self._write_drained()

    def _write_failed(self, exc: OSError) -> None:
        self._buffer.clear()
        self._buffer_size = 0
        self._fatal_error(exc, "Fatal write error on socket transport")
        if self._empty_waiter is not None and not self._empty_waiter.done():
            self._empty_waiter.set_exception(exc)

    def _write_drained(self) -> None:
        """Everything written is out (and no quick send is pending)."""
        self._maybe_resume_protocol()  # may write more: then that is waited for
        if self._write_pending():
            return
        if self._empty_waiter is not None and not self._empty_waiter.done():
            self._empty_waiter.set_result(None)
        if self._closing:
            self._call_connection_lost(None)
        elif self._eof:
            self._shutdown_write()

    def _write_pending(self) -> bool:
        """Bytes written that are not known to be out; if only a quick
        send is, ask to hear when it settles."""
        if self._buffer_size or self._send_ud:
            return True
        if self._quick_pending():
            self._wait_settle()
            return True
        return False

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc, "Fatal error on socket shutdown")

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._write_pending():
            self._shutdown_write()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        if self._quick_pending():
            staged = self._quick_size if self._quick_parts is not None else len(self._quick_data)
            return self._buffer_size + staged
        return self._buffer_size

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._write_pending():
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stash.clear()
        self._stop_reading()
        if not self._write_pending():
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
            )
        self._force_close(exc)

    def _force_close(self, exc) -> None:
        if self._conn_lost:
            return
        if self._buffer_size:
            self._buffer.clear()
            self._buffer_size = 0
            if self._send_ud:
                self._proactor.cancel_stream(self._send_ud)  # its bytes stay kept until it completes
        if self._quick_data is not None and self._quick_stamp == self._proactor._batch:
            self._proactor._staged.pop(self._quick_ud, None)  # staged, not in the SQ: dropped
            self._quick_data = None
            self._quick_parts = None
        if not self._closing:
            self._closing = True
            self._stash.clear()
            self._stop_reading()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc) -> None:
        if self._called_connection_lost:
            return
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            sock = self._sock
            # The ring holds a reference to the socket while a recv or send is
            # in the kernel; shutdown() ends those at once and lets the peer
            # see the end now, not when their cancels have run.  On Linux it
            # fails with ENOTCONN when the peer is gone already.
            if sock.fileno() != -1:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            sock.close()
            self._sock = None
            self._protocol = None
            self._called_connection_lost = True
            if self._quick_ud:
                self._proactor.quick_release(self._quick_ud)
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))
            server = self._server
            if server is not None:
                server._detach()
                self._server = None
