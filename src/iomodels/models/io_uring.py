"""io_uring: completion-based, truly asynchronous IO (Linux 5.19+).

Waiting for data AND copying it: both phases are the kernel's.  We hand it
  the whole operation up front ("receive on this socket into a buffer of
  this pool", "send these bytes") as a submission queue entry (SQE); when we
  hear of it, through a completion queue entry (CQE), the bytes are already
  in our buffer, or already gone.  The process is never blocked in a read and
  there is no readiness step: no "ready" event followed by our own recv().
  Our only blocking point is the one io_uring_enter() per loop turn.
The rings: the SQ and CQ are shared memory (see iomodels.uring); queueing an
  operation is one struct.pack_into into the SQ, reaping one iter_unpack of
  the CQ.  Data arrives in a provided-buffer ring (IORING_REGISTER_PBUF_RING):
  a pool of buffers the kernel picks from when data *arrives*, so an idle
  connection with a recv armed holds no buffer (5000 idle connections cost
  no recv memory; a 64 KiB buffer per connection would cost 320 MB).
Files (transport.sendfile, wsgi.file_wrapper) never enter the process: two
  linked SPLICEs per step, file -> a pipe of the transfer's -> socket; the
  kernel moves the pages and waits for socket room itself.
One loop turn:

    1. submit_and_wait        ONE io_uring_enter: submits every SQE queued in
                              the last turn (the staged replies are queued
                              just before), waits for >= 1 completion (or the
                              next timer), and (DEFER_TASKRUN) runs the
                              kernel's deferred work, which posts the CQEs
    2. reap + dispatch        every CQE, by user_data: (connection id << 3) | kind
    3. ready callbacks        connection_lost, signal handling (call_soon)
    4. due timers             idle sweep, accept retry, graceful-stop deadline
    (5. recycled pool buffers are handed back, one tail store, before 1.)

Why batching: the system call is the expensive part, and in Python so is the
  ctypes call around it.  Whatever the number of active connections, a turn
  costs one enter (at 100 busy connections: ~40 completions per enter), so
  the per-request cost is the Python bytecode that dispatches a CQE and
  queues an SQE.  That is the cost to cut, and what cut it (measured with
  bench/uring_dispatch.py, this model's own dispatch fed synthetic
  completions, no kernel: 0.95 -> 0.65 us of Python per request):
  - Quick sends (models/_io_uring_quick.py, QuickSends): one CQE per
    request instead of two.  A reply goes out as a send that posts a
    completion only if it cannot go out whole; the rest then goes as an
    ordinary send, which waits in the kernel for room and posts its CQE.
    Until the batch that could hold its failure is dispatched the quick
    send is "settling": a write meanwhile is buffered and sent after the
    batch (Connection._settle), so bytes stay in order; a close waits the
    same way.  --uring-sends=plain turns this off (a CQE per send, one send
    in flight per connection).
  - Staged sends: a reply is staged (user_data -> (its connection's SQE
    template, the bytes)) and Ring.prep_quick_sends writes the turn's
    replies into the SQ in one loop just before the enter: a 64-byte copy
    and an address/length patch each, no call per send.
  - The recv hot path inlined in _dispatch; buffers recycled once per turn
    (BufferRing.batch_recycler, which only moves the tail when they come
    back in the order the kernel took them).
What to watch when measuring: statistics() (logged at exit) gives
  completions and SQEs per enter (the batching obtained) and quick_failed
  (quick sends that came back short: a peer reading slower than we write).
  The kernel's work runs inside our enter, in our task (DEFER_TASKRUN), so
  it is charged to the server's CPU time as epoll's recv()/send() are: the
  comparison is fair.  Replies go out at the next enter, after the whole
  batch: a little more latency per request than epoll's immediate send().
  Measured: see BENCHMARKS.md ("io_uring against epoll and uvloop").
Why this file is over 600 lines: the connection's transport and the loop
  are one state machine seen from two sides (every completion handler
  reads and writes both); what is shared with the readiness loop lives in
  core/loop.py and the quick-send state in _io_uring_quick.py.
Facts that shaped this code (kernel 6.18; see also the uring/ package):
  - Multishot accept (5.19+): one SQE, a CQE per connection with F_MORE;
    re-armed when a CQE comes without F_MORE (errors such as EMFILE end it).
  - Multishot recv with buffer selection (6.0+): one SQE per connection, a
    CQE per arrival; against a one-shot recv re-armed per completion it
    saves an SQE per request (measured: 7.2 -> 6.0 us per request, together
    with the changes below).  It ends (no F_MORE) on EOF, errors, -ENOBUFS
    (the pool ran dry within one enter: re-armed at once, the pool is
    refilled before the next enter) and cancellation.
  - Back-pressure: while output is over HIGH_WATER, pause_reading() cancels
    the multishot recv (a one-shot recv is simply not re-armed).  What was
    already posted before the cancel lands is stashed and delivered, in
    order, on resume_reading(): at most one enter's worth, bounded by the
    pool.  The stash is also how EOF waits for resume.
  - At most one send in flight per connection (quick or ordinary): two
    unlinked sends can be reordered.  The rest is buffered and sent when
    the first completes; a short send resubmits the remainder (same bytes
    object, new offset).
  - Every buffer must stay alive until its completion, the -ECANCELED one
    after a cancel included: the connection holds its one send's bytes, the
    pool belongs to the server.  A closed connection's fd is closed only
    after its last completion is in: until then it is a "zombie" (cancelled,
    not yet released), and the graceful stop waits for the zombies too.
  - Connection ids, not fds, name operations: an fd is reused by the next
    accept as soon as it is closed, and late CQEs must not reach the new
    connection.
  - Signals: io_uring_enter returns EINTR when a signal lands during the
    wait, but one that lands just before the enter would not wake it, so the
    C-level handler writes to a socketpair (signal.set_wakeup_fd) and a recv
    on the other end is always armed: a signal always completes something.
  - The pool is 256 x 16 KiB: the kernel cycles through it, so all of it
    becomes resident (4 MiB) under bulk load; 64 KiB buffers would make the
    pool 16 MiB, the whole RSS budget of the back-pressure test.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from iomodels import uring
from iomodels.core.loop import FileTransfer, LoopConnection, LoopServer
from iomodels.core.offload import LoopWorkerMixin
from iomodels.core.protocol import HIGH_WATER, LOW_WATER, file_aborted
from iomodels.core.server import (
    ACCEPT_RESOURCE_ERRNOS,
    ACCEPT_SKIP_ERRNOS,
    configure_accepted,
)
from iomodels.models._io_uring_quick import QuickSends

log = logging.getLogger("iomodels")

# user_data = (id << KIND_BITS) | kind.  Id 0 is the server's own operations.
KIND_BITS = 3
K_RECV = 0  # a connection's recv
K_SEND = 1  # a connection's send
K_CANCEL = 2  # any cancel SQE: its CQE is ignored
UD_ACCEPT = 3  # (0 << 3) | 3: the listener's (multishot) accept
UD_WAKEUP = 4  # (0 << 3) | 4: recv on the signal wakeup socket
K_QUICK = 5  # a connection's quick send: a CQE only if it failed or was short
K_FILL = 6  # sendfile(): a splice from the file into the transfer's pipe
K_DRAIN = 7  # sendfile(): a splice from the pipe into the socket
UD_CANCEL = K_CANCEL

RING_ENTRIES = 4096  # SQ slots; the CQ gets twice that.  A fuller SQ auto-submits.
POOL_BGID = 1  # buffer group id of the recv pool
POOL_COUNT = 256  # buffers in the pool (a power of two)
POOL_SIZE = 16 * 1024  # bytes per buffer: one recv completion carries at most this
DRAIN_TIMEOUT_S = 2.0  # at exit: how long to wait for cancelled operations
# sendfile(): the transfer's pipe is asked for this size (F_SETPIPE_SZ; Linux
# caps it at /proc/sys/fs/pipe-max-size, 1 MiB by default, and we take what
# we get): one fill + drain pair of splices moves at most this much.
SENDFILE_PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)

F_MORE = uring.IORING_CQE_F_MORE
F_BUFFER = uring.IORING_CQE_F_BUFFER
BUFFER_SHIFT = uring.IORING_CQE_BUFFER_SHIFT
_ECANCELED = errno.ECANCELED
# recv/send results that mean "try again" rather than "this peer is gone".
_RETRY = frozenset({errno.EAGAIN, errno.EINTR, errno.ENOBUFS})


def _error(res: int) -> OSError:
    err = -res
    cls = {
        errno.ECONNRESET: ConnectionResetError,
        errno.EPIPE: BrokenPipeError,
        errno.ECONNABORTED: ConnectionAbortedError,
        errno.ETIMEDOUT: TimeoutError,
    }.get(err, OSError)
    return cls(err, os.strerror(err))


class Connection(LoopConnection, LoopWorkerMixin):
    """A transport over one socket whose IO is done by the kernel.

    State per direction: ``_recv_armed`` (a recv SQE is in the kernel) and
    ``_sending`` (the bytes of the one send in flight, None if none).  A
    closed connection stays in the loop's table until both are done.
    """

    sendfile_by = "io_uring splice"  # how sendfile() moves the file (its log line says)

    __slots__ = (
        "_loop",
        "_sock",
        "_fd",
        "_id",
        "_ud_recv",
        "_ud_send",
        "_ud_quick",
        "_quick",
        "_quick_sqe",
        "_quick_stamp",
        "_protocol",
        "_buffer",
        "_file",
        "_sending",
        "_send_off",
        "_recv_armed",
        "_recv_cancelling",
        "_reading_paused",
        "_protocol_paused",
        "_stash",
        "_eof",
        "_closing",
        "_closed",
        "_peername",
        "last_active",
        "idle_timeout_s",
    )

    def __init__(self, loop: Server, sock: socket.socket, conn_id: int, peername: Any) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._id = conn_id
        self._ud_recv = (conn_id << KIND_BITS) | K_RECV
        self._ud_send = (conn_id << KIND_BITS) | K_SEND
        self._ud_quick = (conn_id << KIND_BITS) | K_QUICK
        self._quick_sqe: bytes | None = None  # Ring.quick_send_template, if quick sends are used
        self._quick: QuickSends = loop._quick  # the server's, here for the write path
        self._quick_stamp = -1  # QuickSends.batch when our last quick send was staged
        self._protocol: Any = None
        self._buffer = bytearray()  # output waiting for the send in flight
        self._file: FileTransfer | None = None  # a sendfile() in progress
        self._sending: bytes | None = None  # the send in flight (kept alive until its CQE)
        self._send_off = 0  # how much of _sending is already sent
        self._recv_armed = False  # a recv is in the kernel (multishot: until a CQE without F_MORE)
        self._recv_cancelling = False  # pause_reading() cancelled the multishot recv
        self._reading_paused = False
        self._protocol_paused = False
        self._stash: list[bytes] = []  # data that completed while reading was paused (b"": EOF)
        self._eof = False
        self._closing = False
        self._closed = False
        self._peername = peername
        self.last_active = loop.now
        self.idle_timeout_s = loop.config.idle_timeout_s  # set_idle_timeout(); 0: never

    # ---- protocol-facing API (the Transport protocol)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if self._sending is None and not self._buffer and self._file is None:
            # Nothing queued: hand the bytes to the kernel (zero-copy for
            # bytes; anything mutable is copied, the caller may reuse it).
            if type(data) is not bytes:
                data = bytes(data)
            quick = self._quick
            if self._quick_stamp >= quick.settled:  # quick.pending(stamp), inlined
                # Our last quick send is not settled yet (its failure, if
                # any, may still be ahead in this batch): keep the order.
                self._buffer += data
                quick.wait_for_settle(self)
            elif self._quick_sqe is not None and len(data) <= HIGH_WATER:
                # The common case: staged, queued just before the next enter,
                # no completion unless it fails (see _quick_done).  This is
                # quick.stage() inlined: the write path is the hot path.
                quick.staged[self._ud_quick] = (self._quick_sqe, data)
                self._quick_stamp = quick.batch
                self.last_active = self._loop.now  # no completion will say so if it all goes
                return
            else:
                self._send(data)
                if len(data) <= HIGH_WATER:
                    return
        else:
            self._buffer += data
        self._check_high_water()

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None, *, done: Any = None) -> None:
        """Through the ring: splices, file -> a pipe of the transfer's -> socket,
        once every send before it is done (core/protocol.py: the contract).

        Each step is a linked pair: fill (file -> pipe, up to the pipe's size)
        then drain (pipe -> socket, the same count).  A short fill fails the
        link (the drain completes with -ECANCELED), and a short drain leaves
        bytes in the pipe: either way the next step drains exactly what is in
        the pipe, unlinked, since a splice from an empty pipe would wait for
        a writer that never comes.  The next step is decided only once both
        CQEs of a step are in.  The drain waits in the kernel for socket room
        (the kernel's flow control: nothing is buffered here; meanwhile the idle
        sweep counts the peer's acknowledged bytes as progress); a cancel (abort,
        idle timeout) interrupts it, and the pipe and ``done`` wait for the
        last CQE, as a closed connection's fd does."""
        transfer = self._begin_file(file, offset, count, done)
        if transfer is None:
            return
        if self._sending is not None or transfer.ahead:
            return  # _send_done starts it once what was written before is sent
        if self._quick_pending():
            self._quick.wait_for_settle(self)  # _settle starts it
            return
        self._start_file()

    def _start_file(self) -> None:
        transfer = self._file
        transfer.started = True
        if not transfer.left:
            self._file_step()
            return
        try:
            r, w = os.pipe2(os.O_CLOEXEC)
        except OSError as exc:  # EMFILE/ENFILE: done hears of it; what follows the file goes on
            self._file = None
            transfer.complete(self, exc)
            if self._buffer:
                self._send_buffer()
            elif self._closing:
                self._finish(None)
            return
        transfer.pipe = (r, w)
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, min(SENDFILE_PIPE_SIZE, max(transfer.left, 4096)))
        except OSError:  # over pipe-max-size or the user's pipe quota: the default size will do
            pass
        transfer.chunk = fcntl.fcntl(w, _F_GETPIPE_SZ)
        self._fill()

    def _fill(self) -> None:
        transfer = self._file
        n = min(transfer.left, transfer.chunk)
        prep = self._loop._ring.prep_splice
        ud = self._id << KIND_BITS
        r, w = transfer.pipe
        prep(transfer.fd, transfer.offset, w, -1, n, ud | K_FILL, sqe_flags=uring.IOSQE_IO_LINK)
        prep(r, -1, self._fd, -1, n, ud | K_DRAIN)
        transfer.in_flight += 2
        transfer.calls += 2

    def _fill_done(self, res: int, flags: int) -> None:
        transfer = self._file
        transfer.in_flight -= 1
        if res > 0:
            transfer.offset += res
            transfer.left -= res
            transfer.in_pipe += res
            self.last_active = self._loop.now
        elif res == 0:
            transfer.eof = True  # the file ended early
        elif res != -_ECANCELED and transfer.error is None:
            transfer.error = _error(res)  # the file's own error (EIO...)
        if not transfer.in_flight:
            self._file_step()

    def _drain_done(self, res: int, flags: int) -> None:
        transfer = self._file
        transfer.in_flight -= 1
        if res > 0:
            transfer.in_pipe -= res
            transfer.sent += res
            self.last_active = self._loop.now
        elif res < 0 and res != -_ECANCELED and -res not in _RETRY and transfer.error is None:
            transfer.error = _error(res)  # reset, broken pipe: the client went away
        if not transfer.in_flight:
            self._file_step()

    def _file_step(self) -> None:
        """Both CQEs of a step are in: drain what the pipe holds, fill it
        again, or end the transfer."""
        transfer = self._file
        if self._closed:
            self._file = None
            transfer.complete(self, transfer.error or file_aborted())
            self._release_if_done()
            return
        if transfer.error is not None:
            self._fatal(transfer.error)  # _finish hands it to done
            return
        if transfer.in_pipe:
            r, _w = transfer.pipe
            ud = (self._id << KIND_BITS) | K_DRAIN
            self._loop._ring.prep_splice(r, -1, self._fd, -1, transfer.in_pipe, ud)
            transfer.in_flight += 1
            transfer.calls += 1
            return
        if transfer.left and not transfer.eof:
            self._fill()
            return
        self._file = None
        transfer.complete(self, None)
        if self._buffer:
            self._send_buffer()  # what was written behind the file
            self._check_high_water()
        elif self._closing:
            self._finish(None)

    def pause_reading(self) -> None:
        # A one-shot recv is simply not re-armed (see _recv_done); a
        # multishot one is cancelled.  What completes meanwhile is stashed.
        if self._reading_paused:
            return
        self._reading_paused = True
        if self._recv_armed and not self._recv_cancelling and self._loop._multishot_recv:
            self._recv_cancelling = True
            self._loop._prep_cancel(self._ud_recv, UD_CANCEL)

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._closing:
            return
        if self._stash:
            self._loop._ready.append((self._deliver_stash, None))
        else:
            self._arm_recv()

    def get_write_buffer_size(self) -> int:
        sending = self._sending
        if sending is not None:
            return len(sending) - self._send_off + len(self._buffer)
        return self._quick.in_flight_bytes(self._ud_quick) + len(self._buffer)

    def _quick_pending(self) -> bool:
        """A quick send of ours is not settled: staged or queued since the
        last enter, or submitted by it and its failure CQE (if any) not yet
        dispatched."""
        return self._quick.pending(self._quick_stamp)

    # ---- completions (the loop's handlers, by user_data)

    def _arm_recv(self) -> None:
        if not (self._recv_armed or self._reading_paused or self._closing or self._eof):
            self._recv_armed = True
            loop = self._loop
            loop._prep_recv(self._fd, self._ud_recv, POOL_BGID, multishot=loop._multishot_recv)

    def _recv_done(self, res: int, flags: int) -> None:
        # The hot path (data, multishot recv still armed, reading) is inlined
        # in Server._dispatch; this handles every other recv completion.
        if not flags & F_MORE:  # the request is over (one-shot, or multishot ended)
            self._recv_armed = False
            self._recv_cancelling = False
        if flags & F_BUFFER:
            # Copy out of the pool (an mmap slice is one bytes copy) and give
            # the buffer back at once, so the pool never runs dry for long.
            loop = self._loop
            bid = flags >> BUFFER_SHIFT
            start = bid * POOL_SIZE
            data = loop._pool_mem[start : start + res]
            loop._recycle(bid)
        else:
            data = b""  # errors and EOF carry no buffer
        if self._closing:
            if self._closed:
                self._release_if_done()
            return  # closing: what arrives now is dropped, as a readiness loop stops reading
        if res > 0:
            self.last_active = self._loop.now
            if self._reading_paused or self._stash:
                self._stash.append(data)  # delivered, in order, on resume_reading()
            else:
                try:
                    self._protocol.data_received(data)
                except Exception as exc:
                    self._protocol_error(exc, "data_received")
                    return
            if not self._recv_armed:
                self._arm_recv()
            return
        if res == 0:  # EOF: the peer half-closed (ends a multishot recv too)
            self._eof = True  # never re-armed: the recv would complete with 0 again
            if self._reading_paused or self._stash:
                self._stash.append(b"")
            else:
                self._eof_received()
            return
        if res == -_ECANCELED or -res in _RETRY:
            # Cancelled by pause_reading() (re-armed only if resumed since),
            # or -ENOBUFS: the pool ran dry in this turn and is refilled by now.
            self._arm_recv()
            return
        self._fatal(_error(res))

    def _deliver_stash(self, _arg: Any = None) -> None:
        stash = self._stash
        while stash and not (self._reading_paused or self._closing):
            data = stash.pop(0)
            if not data:
                self._eof_received()
                return
            try:
                self._protocol.data_received(data)
            except Exception as exc:
                self._protocol_error(exc, "data_received")
                return
        if not stash:
            self._arm_recv()

    def _eof_received(self) -> None:
        self._eof = True
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_error(exc, "eof_received")
            return
        if not keep_open:
            self.close()

    def _send_done(self, res: int, flags: int) -> None:
        sending = self._sending
        if res > 0 and not self._closing:
            # The common case first: all of it went, nothing else to do.
            off = self._send_off + res
            if off == len(sending) and not self._buffer and not self._protocol_paused and self._file is None:
                self._sending = None
                self.last_active = self._loop.now
                return
        if self._closed:
            self._sending = None
            self._release_if_done()
            return
        if res < 0:
            if -res in _RETRY:
                self._loop._prep_send(self._fd, sending, self._ud_send, self._send_off)
                return
            self._sending = None
            self._fatal(_error(res))
            return
        self.last_active = self._loop.now
        off = self._send_off + res
        if off < len(sending):  # short send: the remainder, same object
            self._send_off = off
            self._loop._prep_send(self._fd, sending, self._ud_send, off)
            return
        transfer = self._file
        if transfer is not None and not transfer.ahead:
            self._sending = None  # what was written before the file is out: its turn
            if not transfer.started:
                self._start_file()
        elif self._buffer:
            self._send_buffer()
        else:
            self._sending = None
        if self._protocol_paused and self.get_write_buffer_size() <= LOW_WATER:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._protocol_error(exc, "resume_writing")
                return
        if self._sending is None and self._file is None and self._closing:
            self._finish(None)

    def _quick_done(self, res: int, flags: int) -> None:
        """A quick send did not go out whole (a success posts no CQE): the
        socket was full (-EAGAIN), it sent ``res`` bytes of it, or failed.
        The rest becomes an ordinary send, which waits in the kernel until
        the socket is writable; what was written since follows it."""
        data = self._quick.take_failed(self._ud_quick)
        self._loop._stats["quick_failed"] += 1
        if self._closed:
            self._release_if_done()
            return
        if data is None or res >= len(data):  # pragma: no cover - the kernel skips these
            return
        if res >= 0 or -res in _RETRY:
            self._send(data, max(res, 0))
            self._check_high_water()
            return
        self._fatal(_error(res))

    def _settle(self) -> None:
        """After a batch: our quick send has settled (gone whole, or turned
        into an ordinary send by _quick_done): send what was written while
        it was pending, finish a close that waited for it, release a zombie."""
        if self._quick_pending():
            self._quick.wait_for_settle(self)  # a newer one: after the next batch
            return
        if self._closed:
            self._release_if_done()
            return
        if self._sending is not None:
            return  # an ordinary send is in flight: _send_done takes it from here
        transfer = self._file
        if transfer is not None and not transfer.ahead:
            if not transfer.started:
                self._start_file()
        elif self._buffer:
            self._send_buffer()
        elif self._closing:
            self._finish(None)

    # ---- internals

    def _flush_before_close(self) -> bool:
        if self._sending is not None or self._file is not None:
            return True  # _send_done / _file_step finish once the buffer is empty
        if self._buffer or self._quick_pending():
            self._quick.wait_for_settle(self)  # _settle flushes, then finishes
            return True
        return False

    def _send(self, data: bytes, offset: int = 0) -> None:
        """An ordinary send (one CQE, waits in the kernel for room): the one in flight."""
        self._sending = data
        self._send_off = offset
        self._loop._prep_send(self._fd, data, self._ud_send, offset)

    def _send_buffer(self) -> None:
        buffer = self._buffer
        transfer = self._file
        if transfer is not None:  # only what was written before the file
            data = bytes(buffer[: transfer.ahead])
            del buffer[: transfer.ahead]
            transfer.ahead = 0
        else:
            data = bytes(buffer)
            buffer.clear()
        self._send(data)

    def _check_high_water(self) -> None:
        if not self._protocol_paused and self.get_write_buffer_size() > HIGH_WATER:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._protocol_error(exc, "pause_writing")

    def _finish(self, exc: BaseException | None) -> None:
        """Closed for the protocol: cancel what is in the kernel; the fd is
        closed by _release once the last completion is in."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._stash.clear()
        loop = self._loop
        loop._connections.pop(self._id, None)
        in_flight = False
        if self._recv_armed:
            loop._prep_cancel(self._ud_recv, UD_CANCEL)
            in_flight = True
        if self._sending is not None:
            loop._prep_cancel(self._ud_send, UD_CANCEL)
            in_flight = True
        transfer = self._file
        if transfer is not None:
            if transfer.in_flight:  # _file_step completes it once the cancelled splices are in
                ud = self._id << KIND_BITS
                loop._prep_cancel(ud | K_FILL, UD_CANCEL)
                loop._prep_cancel(ud | K_DRAIN, UD_CANCEL)
                transfer.error = transfer.error or exc
                in_flight = True
            else:
                self._file = None
                transfer.complete(self, exc or file_aborted())
        if self._quick_pending():
            # Not cancelled: like a write that epoll or asyncio sent at once,
            # or an ordinary send queued before the cancel, a staged reply
            # still goes out.  It settles within a batch; the fd stays open
            # until then.
            self._quick.wait_for_settle(self)
            in_flight = True
        if in_flight:
            loop._zombies[self._id] = self
        else:
            self._release()
        loop._ready.append((self._connection_lost, exc))

    def _release_if_done(self) -> None:
        """A closed connection waiting for its completions: release it
        once nothing of it is left in the kernel."""
        if (
            not self._recv_armed
            and self._sending is None
            and self._file is None
            and not self._quick_pending()
            and self._id in self._loop._zombies
        ):
            self._release()

    def _release(self) -> None:
        """Every completion is in: the kernel is done with us; close the fd."""
        loop = self._loop
        loop._zombies.pop(self._id, None)
        handlers = loop._handlers
        handlers.pop(self._ud_recv, None)
        handlers.pop(self._ud_send, None)
        handlers.pop(self._ud_quick, None)
        handlers.pop((self._id << KIND_BITS) | K_FILL, None)
        handlers.pop((self._id << KIND_BITS) | K_DRAIN, None)
        loop._readers.pop(self._ud_recv, None)
        self._sending = None
        self._sock.close()
        loop._connection_closed()


class Server(LoopServer):
    """The completion loop: one ring, one enter per turn."""

    name = "io_uring"
    # Use the multishot variants when the kernel has them (checked live at
    # start); False forces the one-shot fallbacks (kernels before 5.19 / 6.0).
    multishot_accept = True
    multishot_recv = True
    quick_sends = True  # False: every send is an ordinary one, with its CQE

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, details = uring.probe()
        if not ok:
            return False, details
        try:
            with uring.Ring(8) as ring:
                for opcode, what in (
                    (uring.IORING_OP_ACCEPT, "IORING_OP_ACCEPT (5.5+)"),
                    (uring.IORING_OP_RECV, "IORING_OP_RECV (5.6+)"),
                    (uring.IORING_OP_SEND, "IORING_OP_SEND (5.6+)"),
                    (uring.IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL (5.5+)"),
                ):
                    if not ring.supports(opcode):
                        return False, f"io_uring: {what} not supported by this kernel"
                try:
                    uring.BufferRing(ring, POOL_BGID, 2, 64).close()
                except OSError as exc:
                    return False, f"io_uring: provided buffer rings (5.19+) unavailable: {exc.strerror}"
        except OSError as exc:
            return False, f"io_uring: {exc}"
        return True, details

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ring: uring.Ring | None = None
        self._pool: uring.BufferRing | None = None
        self._handlers: dict[int, Callable[[int, int], None]] = {}  # user_data -> handler
        self._readers: dict[int, Connection] = {}  # recv user_data -> connection (the hot path)
        self._connections: dict[int, Connection] = {}  # id -> open connection
        self._zombies: dict[int, Connection] = {}  # id -> closed, completions still due
        self._ids = itertools.count(1)
        self._multishot_accept = False
        self._multishot_recv = False
        self._accepting = False  # we want connections
        self._accept_armed = False  # an accept SQE is in the kernel
        self._wakeup_armed = False
        self._wakeup_closing = False  # _shutdown: the wakeup recv is not re-armed
        # The hot path's bound callables (_open_ring): these run per completion.
        self._pool_mem: Any = None  # the recv pool's mmap
        self._recycle: Callable[[int], None] | None = None
        self._flush_recycled: Callable[[], None] | None = None
        self._prep_recv: Callable[..., None] | None = None
        self._prep_send: Callable[..., None] | None = None
        self._prep_cancel: Callable[[int, int], None] | None = None
        self._stats.update(enters=0, completions=0, submitted=0, quick_failed=0)
        self._quick_sends = False  # the ring can (Ring.supports_quick_send) and we want them
        self._quick = QuickSends()  # staged, queued, settling (models/_io_uring_quick.py)

    # ---- accepting

    def _arm_accept(self) -> None:
        self._ring.prep_accept(self.listener.fileno(), UD_ACCEPT, multishot=self._multishot_accept)
        self._accept_armed = True

    def _start_accepting(self) -> None:
        if self._stopping:
            return
        self._accepting = True
        if not self._accept_armed:
            self._arm_accept()

    def _stop_accepting(self) -> None:
        self._accepting = False
        if self._accept_armed:
            self._prep_cancel(UD_ACCEPT, UD_CANCEL)  # its CQE (no F_MORE) disarms

    def _accept_done(self, res: int, flags: int) -> None:
        if not flags & F_MORE:
            self._accept_armed = False
        if res >= 0:
            self._accepted(res)
        elif -res in ACCEPT_RESOURCE_ERRNOS:
            self._accept_exhausted(-res)
        elif (
            -res not in ACCEPT_SKIP_ERRNOS
            and -res not in (errno.ECANCELED, errno.EINTR, errno.EAGAIN)
            and not self._accept_closed  # EINVAL: stop_accepting(release=True) shut the listener
        ):
            raise OSError(-res, f"io_uring accept: {os.strerror(-res)}")  # our bug: let it through
        if self._accepting and not self._accept_armed:
            self._arm_accept()

    def _accepted(self, fd: int) -> None:
        if not self._admit():
            os.close(fd)  # --max-connections: accepted and closed at once
            return
        listener = self.listener
        sock = socket.socket(listener.family, listener.type, listener.proto, fileno=fd)
        try:
            peername = sock.getpeername()
        except OSError:  # already reset: serve it anyway, the recv will say so
            peername = None
        configure_accepted(sock)
        conn_id = next(self._ids)
        conn = Connection(self, sock, conn_id, peername)
        self._connections[conn_id] = conn
        self._handlers[conn._ud_recv] = conn._recv_done
        self._readers[conn._ud_recv] = conn
        self._handlers[conn._ud_send] = conn._send_done
        self._handlers[conn._ud_quick] = conn._quick_done
        self._handlers[(conn_id << KIND_BITS) | K_FILL] = conn._fill_done
        self._handlers[(conn_id << KIND_BITS) | K_DRAIN] = conn._drain_done
        if self._quick_sends:
            conn._quick_sqe = self._ring.quick_send_template(conn._fd, conn._ud_quick)
        if self._start_protocol(conn):
            conn._arm_recv()

    # ---- the signal wakeup

    def _wakeup_done(self, res: int, flags: int) -> None:
        self._wakeup_armed = False
        if flags & F_BUFFER:
            self._recycle(flags >> BUFFER_SHIFT)  # the bytes themselves say nothing
        if res < 0 and res != -_ECANCELED and -res not in _RETRY:
            raise OSError(-res, f"wakeup recv: {os.strerror(-res)}")
        if res != -_ECANCELED and not self._wakeup_closing:
            self._ring.prep_recv_select(self._wake_r.fileno(), UD_WAKEUP, POOL_BGID)
            self._wakeup_armed = True

    def _dispatch(self, cqes: list[tuple[int, int, int]]) -> None:
        """Hand one batch of completions to their handlers (by user_data)."""
        # The quick sends queued before the enter are done, or their CQE is
        # in this batch: until it is dispatched they are "settling".
        quick = self._quick
        quick.begin_batch()
        get_handler = self._handlers.get
        get_reader = self._readers.get
        pool_mem = self._pool_mem
        recycle = self._recycle
        now = self.now
        for ud, res, flags in cqes:
            conn = get_reader(ud)
            if (
                conn is not None
                and res > 0
                and flags & F_MORE
                and not (conn._closing or conn._reading_paused or conn._stash)
            ):
                # The hot path, inlined (a frame per request shows: BENCHMARKS.md,
                # "The ring layer's unit costs"): data, the multishot recv stays
                # armed, deliver it.  Copy it out of the pool and give the
                # buffer back at once.
                bid = flags >> BUFFER_SHIFT
                start = bid * POOL_SIZE
                data = pool_mem[start : start + res]
                recycle(bid)
                conn.last_active = now
                try:
                    conn._protocol.data_received(data)
                except Exception as exc:
                    conn._protocol_error(exc, "data_received")
                continue
            handler = get_handler(ud)
            if handler is not None:  # None: a cancel's own CQE
                handler(res, flags)
        quick.end_batch()

    def _queue_quick(self) -> None:
        """Just before an enter: the staged quick sends into the SQ."""
        self._quick.queue(self._ring.prep_quick_sends)

    def statistics(self) -> dict[str, int | float]:
        stats: dict[str, int | float] = dict(self._stats)
        enters = stats["enters"]
        stats["connections"] = len(self._connections)
        stats["completions_per_enter"] = stats["completions"] / enters if enters else 0.0
        stats["sqes_per_enter"] = stats["submitted"] / enters if enters else 0.0
        return stats

    # ---- the loop

    def _open_ring(self) -> uring.Ring:
        """The ring, the recv pool, and the hot path's bound callables."""
        ring = self._ring = uring.Ring(RING_ENTRIES)
        try:
            self._multishot_accept = self.multishot_accept and ring.supports_multishot_accept
            self._multishot_recv = self.multishot_recv and ring.supports_multishot_recv
            self._pool = uring.BufferRing(ring, POOL_BGID, POOL_COUNT, POOL_SIZE)
        except BaseException:
            ring.close()
            raise
        # The hot path, bound once: these run per completion.
        self._pool_mem = self._pool.memory  # the pool's mmap: slicing it copies out bytes
        self._recycle, self._flush_recycled = self._pool.batch_recycler()
        self._prep_recv = ring.prep_recv_select
        self._prep_send = ring.unmanaged_send_preparer()
        self._prep_cancel = ring.prep_cancel
        self._quick_sends = self.quick_sends and self.config.uring_quick_sends and ring.supports_quick_send
        return ring

    def _open_io(self) -> None:
        ring = self._open_ring()
        self._handlers[UD_ACCEPT] = self._accept_done
        self._handlers[UD_WAKEUP] = self._wakeup_done
        log.debug(
            "io_uring: setup %s; multishot accept %s, recv %s; quick sends %s; recv pool %d x %d B",
            "|".join(ring.setup_flag_names) or "none",
            "yes" if self._multishot_accept else "no",
            "yes" if self._multishot_recv else "no",
            "yes" if self._quick_sends else "no",
            POOL_COUNT,
            POOL_SIZE,
        )

    def _watch_wakeup(self, sock: socket.socket) -> None:
        # A recv always armed on it: a signal always completes something.
        self._ring.prep_recv_select(sock.fileno(), UD_WAKEUP, POOL_BGID)
        self._wakeup_armed = True

    def _format_stats(self) -> str:
        return " ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.statistics().items()
        )

    def _close_io(self) -> None:
        try:
            self._shutdown()
        finally:
            log.info("io_uring statistics: %s", self._format_stats())

    def _shutdown(self) -> None:
        """Leave nothing behind: abort what is open, cancel the accept and
        the wakeup recv, reap every completion still due, then close."""
        ring = self._ring
        for conn in list(self._connections.values()):
            conn.abort()
        self._accepting = False
        self._stopping = True
        if self._accept_armed:
            self._prep_cancel(UD_ACCEPT, UD_CANCEL)
        self._wakeup_closing = True
        if self._wakeup_armed:
            self._prep_cancel(UD_WAKEUP, UD_CANCEL)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        if self.stop_started is not None:  # a signalled stop: within its budget
            deadline = min(deadline, self.stop_deadline)
        while (
            self._zombies or self._accept_armed or self._wakeup_armed or self._quick.unsubmitted
        ) and time.monotonic() < deadline:
            self._flush_recycled()
            if self._quick.staged:
                self._queue_quick()
            ring.submit_and_wait(1, timeout=0.05)
            self.now = time.monotonic()
            self._dispatch(ring.reap())
        self._drain_ready()  # the connection_lost calls still queued
        if self._zombies or self._accept_armed:
            # Never free memory the kernel may still write: leave the pool
            # mapped (closing the ring fd below ends those requests).
            log.warning("io_uring: %d operation(s) did not complete at exit", len(self._zombies))
            for conn in list(self._zombies.values()):
                conn._sock.close()
        else:
            self._pool.close()
        ring.close()

    def _run(self) -> None:
        ring = self._ring
        submit_and_wait = ring.submit_and_wait
        quick = self._quick
        queue_quick, prep_quick_sends = quick.queue, ring.prep_quick_sends
        reap = ring.reap
        dispatch = self._dispatch
        ready = self._ready
        stats = self._stats
        monotonic = time.monotonic
        recycled = self._recycle.__self__  # the list of buffers to give back
        flush_recycled = self._flush_recycled
        timeout: float | None = None
        enters = completions = submitted = 0
        try:
            while True:
                if recycled:
                    flush_recycled()
                # One enter: submit this turn's SQEs, wait for a completion
                # (not at all if callbacks are queued or a connection waits
                # for its quick send to settle: a success posts no CQE, so
                # nothing would wake us), at most until the next timer.
                if quick.staged:
                    queue_quick(prep_quick_sends)
                submitted += submit_and_wait(0 if ready or quick.waiting else 1, timeout)
                self.now = monotonic()
                cqes = reap()
                enters += 1
                completions += len(cqes)
                dispatch(cqes)
                if ready:
                    self._run_ready()
                timeout = self._run_timers() if self._timers else None
                if self._stopping and not self._connections and not self._zombies and not ready:
                    return
                if ready:
                    timeout = 0
        finally:
            stats["enters"] += enters
            stats["completions"] += completions
            stats["submitted"] += submitted
