"""``UringProactor``: CPython's proactor interface on an io_uring ring.

``asyncio.proactor_events.BaseProactorEventLoop`` is generic over a
*proactor*: an object whose ``recv`` / ``recv_into`` / ``send`` / ``accept`` /
``connect`` / ... start an operation and return a future, and whose
``select(timeout)`` waits for completions and resolves those futures.  On
Windows that object is ``IocpProactor``; this is the same surface on
``iomodels.uring.Ring``, so CPython's proactor transports, ``sslproto`` and
streams run on io_uring unchanged.

Each operation is one SQE whose ``user_data`` keys ``_cache`` to
``(future, owner, keeper, finish)``.  The entry, and with it the buffer the
kernel reads or writes, lives until that ``user_data``'s completion is
reaped, even after the future was cancelled (a cancel only queues an
``ASYNC_CANCEL``; the target still completes, with ``-ECANCELED`` or with its
result), as ``IocpProactor._cache`` keeps its ``OVERLAPPED`` structures.
``close()`` cancels everything and drains the cache.

Sockets use RECV / SEND / ACCEPT / CONNECT and, for UDP, SENDMSG / RECVMSG;
pipes READ / WRITE: the kernel copies the data into (or out of) our buffer
before we hear of it.  What waits for readiness with a one-shot POLL_ADD and
then makes the system call itself: ``sendfile``, Unix datagram sockets and
addresses we cannot build a ``sockaddr`` for; ``add_reader`` /
``add_writer`` are POLL_ADDs by definition.  See docs/aio.md.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import socket
import stat
import weakref
from asyncio import futures

from iomodels import uring
from iomodels.uring import addresses
from iomodels.uring.buffers import buffer_span

# Operations the loop cannot work without, with the kernel that has them.
REQUIRED_OPCODES = {
    "ACCEPT": (uring.IORING_OP_ACCEPT, "5.5"),
    "ASYNC_CANCEL": (uring.IORING_OP_ASYNC_CANCEL, "5.5"),
    "POLL_ADD": (uring.IORING_OP_POLL_ADD, "5.1"),
    "READ": (uring.IORING_OP_READ, "5.6"),
    "WRITE": (uring.IORING_OP_WRITE, "5.6"),
    "SEND": (uring.IORING_OP_SEND, "5.6"),
    "RECV": (uring.IORING_OP_RECV, "5.6"),
}

# The pool the stream transports receive into (transport.py): 256 buffers
# of 16 KiB, as the io_uring model's.  The kernel takes them in ring order,
# so in time every page of the pool is touched: its size is resident memory
# per loop (tests/conformance/test_backpressure.py bounds a server's growth).
# One completion carries at most one buffer.
POOL_BGID = 1
POOL_COUNT = 256
POOL_SIZE = 16 * 1024
_F_MORE = uring.IORING_CQE_F_MORE

_AGAIN = object()  # finish() re-queued the operation under the same user_data
_UD_IGNORE = 0  # cancels and other fire-and-forget SQEs: completion dropped
# Plain ints: the socket module's MSG_* are IntFlag members, and OR-ing
# those costs an enum call each (measured: ~10% of an echo request).
_MSG_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_SEND_NOW = int(socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
_RECV_NOW = int(socket.MSG_DONTWAIT)
_INET = (socket.AF_INET, socket.AF_INET6)  # families with a sockaddr parser (uring.addresses)


class UringUnavailable(RuntimeError):
    """io_uring cannot run this loop here; the message says why."""


def _error(res: int) -> OSError:
    """The OSError subclass of a CQE's ``-errno`` (ConnectionResetError...)."""
    return OSError(-res, os.strerror(-res))


class _UringFuture(futures.Future):
    """A future for one ring operation; cancelling it cancels the operation.

    The cache entry stays until the kernel posts the completion (the buffer
    may still be written until then); only the future is done at once.
    """

    _ud = 0
    _proactor = None

    def cancel(self, msg=None):
        if not self.done() and self._proactor is not None:
            self._proactor._cancel(self._ud)
        return super().cancel(msg=msg)


class UringProactor:
    """IocpProactor's interface over one ``iomodels.uring.Ring``."""

    def __init__(self, entries: int = 256, *, quick_sends: bool = True) -> None:
        self._loop = None
        self._cache: dict[int, tuple] = {}
        # user_data -> callback(res, flags) of the stream transports' recvs
        # and sends: called from the reap loop, no future (transport.py);
        # dropped after the request's final completion (no F_MORE).
        self._handlers: dict = {}
        self._stream = None  # stream_reader()'s tuple, made at the first use
        self._pool = None
        self._recycled: list = []  # buffer ids copied out this turn (BufferRing.batch_recycler)
        # Quick sends (transport.py): user_data -> (SQE template, bytes)
        # written this turn, queued just before the enter; the transports
        # that own quick user_data; those to tell when a batch has settled.
        self._staged: dict = {}
        self._joining: list = []  # transports that staged more than one write this turn
        self._quick_owners: dict = {}
        self._waiting: list = []
        self._batch = 0  # counts enters: a quick send staged now is stamped with it
        self._quick_in_enter = False  # the coming (or last) enter runs quick sends
        self._settled = 0  # quick sends stamped below this have settled (sent, or failed and handled)
        # Ring.prep_quick_sends once checked usable; False: not usable, or
        # not wanted (quick_sends=False: writes send at once, for comparison).
        self._quick = None if quick_sends else False
        self._leftover: list = []  # completions not dispatched when a handler raised SystemExit
        self._next_ud = 1
        self._stopped_serving: weakref.WeakSet = weakref.WeakSet()
        try:
            # Not the ring's default SINGLE_ISSUER | DEFER_TASKRUN: an asyncio
            # loop may be created in one thread and run in another, which
            # SINGLE_ISSUER forbids (see _make_ring).
            self._ring = _make_ring(entries)
        except OSError as exc:
            ok, why = uring.probe()
            raise UringUnavailable(f"cannot create the io_uring loop: {why if not ok else exc}") from exc
        self._has_connect = self._ring.supports(uring.IORING_OP_CONNECT)
        self._has_msg = self._ring.supports(uring.IORING_OP_SENDMSG) and self._ring.supports(
            uring.IORING_OP_RECVMSG
        )
        missing = [
            f"{name} (Linux {version}+)"
            for name, (opcode, version) in REQUIRED_OPCODES.items()
            if not self._ring.supports(opcode)
        ]
        if missing:
            self._ring.close()
            raise UringUnavailable("cannot create the io_uring loop: this kernel lacks " + ", ".join(missing))

    def __repr__(self) -> str:
        state = "closed" if self._ring is None else f"in flight={len(self._cache)}"
        return f"<{type(self).__name__} {state}>"

    def set_loop(self, loop) -> None:
        self._loop = loop

    def _check_closed(self) -> None:
        if self._ring is None:
            raise RuntimeError("UringProactor is closed")

    # -- bookkeeping -------------------------------------------------------

    def _register(self, obj, keeper, finish) -> tuple[int, _UringFuture]:
        """A user_data and a future for an operation about to be queued."""
        self._check_closed()
        ud = self._new_ud()
        fut = _UringFuture(loop=self._loop)
        fut._ud = ud
        fut._proactor = self
        self._cache[ud] = (fut, obj, keeper, finish)
        return ud, fut

    def _new_ud(self) -> int:
        ud = self._next_ud
        while ud in self._cache or ud in self._handlers:  # only after a wrap-around past 2**64 - 2**16
            ud = ud + 1 if ud < uring.USER_DATA_RESERVED - 1 else 1
        self._next_ud = ud + 1 if ud < uring.USER_DATA_RESERVED - 1 else 1
        return ud

    def _cancel(self, ud: int) -> None:
        if ud in self._cache and self._ring is not None:
            self._ring.prep_cancel(ud, _UD_IGNORE)

    def _result(self, value) -> futures.Future:
        fut = self._loop.create_future()
        fut.set_result(value)
        return fut

    # -- socket and pipe operations ------------------------------------------

    def recv(self, conn, nbytes: int, flags: int = 0):
        buf = bytearray(nbytes)

        def finish(res):
            if res < 0:
                raise _error(res)
            with memoryview(buf) as view:  # buf may still be exported: no resize
                return bytes(view[:res])

        if not isinstance(conn, socket.socket) and _is_write_only(conn):
            # A write pipe transport reads its own pipe to learn that the
            # reader went away (Windows reports that as a read of 0 bytes).
            # On Unix the write end polls POLLERR instead.
            return self._poll(conn, 0, lambda: b"")
        return self._recv(conn, buf, flags, finish)

    def recv_into(self, conn, buf, flags: int = 0):
        def finish(res):
            if res < 0:
                raise _error(res)
            return res

        return self._recv(conn, buf, flags, finish)

    def _recv(self, conn, buf, flags, finish):
        ud, fut = self._register(conn, buf, finish)
        try:
            addr, n, keeper = buffer_span(buf, True, 0, None)
            self._cache[ud] = (fut, conn, keeper, finish)  # keeps the buffer until the completion
            if isinstance(conn, socket.socket):
                self._ring.prep_recv_at(conn.fileno(), addr, n, ud, msg_flags=flags)
            else:
                self._ring.prep_read(conn.fileno(), addr, n, ud)
        except BaseException:
            del self._cache[ud]
            raise
        return fut

    def send(self, conn, buf, flags: int = 0):
        """Send all of ``buf`` (a short send is continued under the same
        user_data): the proactor transports, like IOCP's WSASend, count a
        finished send as all written."""
        total = len(buf) if type(buf) in (bytes, bytearray) else memoryview(buf).nbytes
        if total == 0:
            return self._result(0)
        is_sock = isinstance(conn, socket.socket)
        sent = 0
        if is_sock:
            # Try to complete at once, as IOCP's WSASend often does (and
            # uvloop's uv_try_write): the transports count on it, e.g. they
            # pause the protocol only while a send is really pending.  What
            # does not fit in the socket buffer goes to the ring.
            try:
                sent = conn.send(buf, _SEND_NOW | flags)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent >= total:
                return self._result(sent)
        fd = conn.fileno()
        addr, total, keeper = buffer_span(buf, False, 0, None)
        ring = self._ring
        msg_flags = _MSG_NOSIGNAL | flags

        def finish(res):
            nonlocal sent
            if res < 0:
                raise _error(res)
            sent += res
            if sent >= total or res == 0:
                return sent
            queue(sent)
            return _AGAIN

        def queue(offset):
            if is_sock:
                n = total - offset
                ring.prep_send_at(fd, addr + offset, n, ud, msg_flags=msg_flags)
            else:
                ring.prep_write(fd, addr + offset, total - offset, ud)

        ud, fut = self._register(conn, keeper, finish)
        queue(sent)
        return fut

    def accept(self, listener):
        def finish(res):
            if res < 0:
                raise _error(res)
            conn = socket.socket(fileno=res)
            conn.settimeout(0)  # the fd is non-blocking; Python's view of it must say so
            try:
                addr = conn.getpeername()
            except OSError:
                addr = None  # already reset by the peer: the transport will see it
            return conn, addr

        finish.discard = os.close  # accepted after a cancel: nobody will take it
        ud, fut = self._register(listener, None, finish)
        self._ring.prep_accept(listener.fileno(), ud, flags=socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        return fut

    def connect(self, conn, address):
        """IORING_OP_CONNECT on a numeric address; a datagram socket
        connects at once (as IocpProactor does it)."""
        if conn.type == socket.SOCK_DGRAM:
            conn.connect(address)
            return self._result(None)
        raw = addresses.sockaddr(conn.family, address) if self._has_connect else None
        if raw is None:
            return self._connect_by_poll(conn, address)

        def finish(res):
            if res < 0:
                raise OSError(-res, f"Connect call failed {address}")
            return None

        ud, fut = self._register(conn, raw, finish)
        raw_addr = ctypes.cast(ctypes.c_char_p(raw), ctypes.c_void_p).value or 0
        self._ring.prep_connect(conn.fileno(), raw_addr, len(raw), ud)
        # Submitted now, not at the next turn: like connect(2) on a selector
        # loop, the handshake starts during the call (a caller may go on to
        # a blocking accept() on the other end before the loop turns).
        self._ring.submit_and_wait(0)
        return fut

    def _connect_by_poll(self, conn, address):
        """Non-blocking ``connect()``, then a POLLOUT for its outcome."""
        try:
            conn.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            return self._result(None)

        def check():
            err = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"Connect call failed {address}")

        return self._poll(conn, select.POLLOUT, check)

    def sendto(self, conn, buf, flags: int = 0, addr=None):
        data = bytes(buf)
        if conn.family in _INET and self._has_msg:
            raw = addresses.sockaddr(conn.family, addr) if addr is not None else b""
            if raw is not None:
                return self._sendmsg(conn, data, raw, flags)
        if addr is None:
            return self._poll(conn, select.POLLOUT, lambda: conn.send(data, flags | _SEND_NOW))
        return self._poll(conn, select.POLLOUT, lambda: conn.sendto(data, flags | _SEND_NOW, addr))

    def _sendmsg(self, conn, data: bytes, raw: bytes, flags: int):
        name = ctypes.create_string_buffer(raw, len(raw)) if raw else None
        addr, n, _keeper = buffer_span(data, False, 0, None)
        msg, iov = addresses.msghdr(addr, n, ctypes.addressof(name) if name else 0, len(raw))

        def finish(res):
            if res < 0:
                raise _error(res)
            return res

        ud, fut = self._register(conn, (data, name, msg, iov), finish)
        self._ring.prep_sendmsg(conn.fileno(), ctypes.addressof(msg), ud, msg_flags=_MSG_NOSIGNAL | flags)
        return fut

    def recvfrom(self, conn, nbytes: int, flags: int = 0):
        if conn.family in _INET and self._has_msg:
            buf = bytearray(nbytes)

            def result(res, addr):
                with memoryview(buf) as view:
                    return bytes(view[:res]), addr

            return self._recvmsg(conn, buf, nbytes, flags, result)
        return self._poll(conn, select.POLLIN, lambda: conn.recvfrom(nbytes, flags | _RECV_NOW))

    def recvfrom_into(self, conn, buf, nbytes: int = 0, flags: int = 0):
        if conn.family in _INET and self._has_msg:
            return self._recvmsg(conn, buf, nbytes, flags, lambda res, addr: (res, addr))
        return self._poll(conn, select.POLLIN, lambda: conn.recvfrom_into(buf, nbytes, flags | _RECV_NOW))

    def _recvmsg(self, conn, buf, nbytes: int, flags: int, result):
        """RECVMSG into ``buf[:nbytes]`` with the sender's address; the
        kernel writes the address and its length back into our msghdr."""
        addr, size, keeper = buffer_span(buf, True, 0, None)
        nbytes = size if not nbytes else min(nbytes, size)
        name = ctypes.create_string_buffer(addresses.SOCKADDR_STORAGE)
        msg, iov = addresses.msghdr(addr, nbytes, ctypes.addressof(name), addresses.SOCKADDR_STORAGE)
        family = conn.family

        def finish(res):
            if res < 0:
                raise _error(res)
            return result(res, addresses.parse_sockaddr(name.raw[: msg.namelen], family))

        ud, fut = self._register(conn, (keeper, name, msg, iov), finish)
        self._ring.prep_recvmsg(conn.fileno(), ctypes.addressof(msg), ud, msg_flags=flags)
        return fut

    def sendfile(self, sock, file, offset: int, count: int):
        """Send exactly ``count`` bytes of ``file`` from ``offset``."""
        state = [offset, count]

        def attempt():
            # One os.sendfile() per readiness, then back to the loop: the
            # kernel may drain the peer's socket meanwhile (a recv armed on
            # the same ring runs as task work at each return from a system
            # call), so a loop here could send a whole file within one turn,
            # and a peer that closes after a few bytes would never be seen.
            try:
                n = os.sendfile(sock.fileno(), file.fileno(), state[0], state[1])
                if n == 0:
                    raise ConnectionResetError(errno.ECONNRESET, "sendfile: the file ended early")
                state[0] += n
                state[1] -= n
                if state[1] > 0:
                    raise BlockingIOError  # the rest at the next readiness
            except BlockingIOError:
                raise
            except OSError:
                # The loop seeks the file only past whole blocks; leave its
                # position after what did go out, as os.sendfile users expect.
                if state[0] > offset:
                    file.seek(state[0])
                raise
            return count

        return self._poll(sock, select.POLLOUT, attempt)

    def _poll(self, conn, events: int, attempt):
        """Wait until ``conn`` is ready for ``events``, then ``attempt()``;
        a ``BlockingIOError`` re-arms the poll under the same user_data."""
        fd = conn if isinstance(conn, int) else conn.fileno()
        ring = self._ring

        def finish(res):
            if res < 0:
                raise _error(res)
            try:
                return attempt()
            except (BlockingIOError, InterruptedError):
                ring.prep_poll_add(fd, events, ud)
                return _AGAIN

        ud, fut = self._register(conn, None, finish)
        ring.prep_poll_add(fd, events, ud)
        return fut

    # -- readiness for add_reader / add_writer ------------------------------

    def poll_add(self, fd: int, events: int, callback) -> int:
        """Arm a one-shot poll; ``callback(res)`` gets the ready mask (or
        ``-errno``).  Returns the user_data, for ``poll_rearm`` /
        ``poll_cancel``."""
        self._check_closed()
        ud = self._new_ud()
        self._cache[ud] = (None, fd, None, callback)
        self._ring.prep_poll_add(fd, events, ud)
        return ud

    def poll_rearm(self, ud: int, fd: int, events: int, callback) -> None:
        self._cache[ud] = (None, fd, None, callback)
        self._ring.prep_poll_add(fd, events, ud)

    def poll_cancel(self, ud: int) -> None:
        """Cancel an armed poll; its completion is then dropped."""
        entry = self._cache.get(ud)
        if entry is not None:
            self._cache[ud] = (None, entry[1], None, None)
            self._ring.prep_cancel(ud, _UD_IGNORE)

    # -- stream transports: callbacks instead of futures --------------------

    def stream_reader(self):
        """What a ``RingSocketTransport`` receives with: ``(arm, cancel,
        pool memory, pool memoryview, buffer size, recycle)``, or ``None``
        where the kernel has no provided-buffer rings (before 5.19): the
        loop then makes CPython's proactor transports.

        ``arm(fd, callback)`` queues a recv selecting from the pool
        (multishot where the kernel has it) and returns its user_data;
        ``callback(res, flags)`` gets each completion; ``recycle(bid)``
        notes a buffer copied out, given back before the next enter."""
        if self._stream is None:
            self._check_closed()
            ring = self._ring
            try:
                pool = uring.BufferRing(ring, POOL_BGID, POOL_COUNT, POOL_SIZE)
            except OSError:
                self._stream = False
                return None
            self._pool = pool
            self._recycle, self._flush_recycled = pool.batch_recycler()
            self._recycled = self._recycle.__self__
            multishot = ring.supports_multishot_recv
            handlers = self._handlers
            prep = ring.prep_recv_select

            def arm(fd, callback):
                ud = self._new_ud()
                handlers[ud] = callback
                prep(fd, ud, POOL_BGID, multishot=multishot)
                return ud

            self._pool_view = memoryview(pool.memory)
            self._stream = (arm, self.cancel_stream, pool.memory, self._pool_view, POOL_SIZE, self._recycle)
        return self._stream or None

    def quick_sender(self, transport):
        """``(user_data, SQE template)`` for ``transport``'s quick sends,
        or ``None`` where the ring cannot make them (Ring.supports_quick_send).

        A quick send is staged during a turn (``_staged[user_data] =
        (template, data)``), written into the SQ just before the turn's enter,
        and run by the kernel inside that enter; it posts a completion only
        if it fell short or failed (``_on_quick_failed``).  It has *settled*
        once the completions of that enter are dispatched: ``stamp <
        _settled`` (see transport.py for the states a transport sees)."""
        if self._quick is None:
            ring = self._ring
            self._quick = ring.prep_quick_sends if ring.supports_quick_send else False
        if not self._quick:
            return None
        ud = self._new_ud()
        self._quick_owners[ud] = transport
        return ud, self._ring.quick_send_template(transport._sock_fd, ud)

    def quick_release(self, ud: int) -> None:
        self._staged.pop(ud, None)
        self._quick_owners.pop(ud, None)

    def unstage_quick(self) -> None:
        """The loop stops: what is staged goes out now, the ordinary way,
        so that a program reading the peer between runs sees it (a selector
        transport would have sent it in write())."""
        while self._staged:
            ud, _staged = self._staged.popitem()
            owner = self._quick_owners.get(ud)
            if owner is not None:
                owner._send_staged_now()

    def send_stream(self, fd: int, addr: int, nbytes: int, callback) -> int:
        """SEND ``nbytes`` at ``addr`` (memory the caller keeps until the
        completion); ``callback(res, flags)`` gets it."""
        ud = self._new_ud()
        self._handlers[ud] = callback
        self._ring.prep_send_at(fd, addr, nbytes, ud, msg_flags=_MSG_NOSIGNAL)
        return ud

    def cancel_stream(self, ud: int) -> None:
        """Cancel a stream request; its callback still gets the final
        completion (``-ECANCELED``, or what it did before the cancel)."""
        if ud in self._handlers and self._ring is not None:
            self._ring.prep_cancel(ud, _UD_IGNORE)

    # -- waiting ------------------------------------------------------------

    def select(self, timeout: float | None = None) -> list:
        """Submit what was queued, wait up to ``timeout`` for a completion
        (one ``io_uring_enter``), and dispatch every completion there is:
        a stream transport's callback is called right here (as uvloop calls
        its protocols from libuv's callbacks), an operation's future is
        resolved (its callbacks are scheduled by the future).  So the loop's
        ``_process_events`` has nothing to do."""
        ring = self._ring
        if self._recycled:
            self._flush_recycled()  # the buffers copied out last turn go back first
        if self._joining:
            joining = self._joining
            self._joining = []
            for transport in joining:
                transport._join_quick()
        staged = self._staged
        if staged:
            # This turn's quick sends: into the SQ now, run by this enter.
            self._staged = {}
            self._quick_in_enter = True
            self._quick(staged.values())  # each transport keeps its bytes until settled
        if self._waiting:
            # A transport waits for its quick send to settle, and a quick
            # send that went out whole posts nothing: do not sleep for one.
            timeout = 0
        if timeout is None:
            ring.submit_and_wait(1)
        elif timeout <= 0:
            # A non-blocking turn (callbacks are ready): skip the enter when
            # the kernel says it has nothing for us (Ring.needs_enter).
            if ring.needs_enter():
                ring.submit_and_wait(0)
        else:
            ring.submit_and_wait(1, timeout)
        self._batch += 1  # what was staged before this enter has been submitted by it
        cqes = ring.reap()
        if self._leftover:
            cqes = self._leftover + cqes
            self._leftover = []
        if self._quick_in_enter:
            # The quick sends this enter ran have settled once their failure
            # completions (short or -EAGAIN: rare) are handled; handle them
            # first, so that a write made while this batch is dispatched
            # (the peer answered at once) finds its connection idle.
            self._quick_in_enter = False
            owners = self._quick_owners
            for ud, res, _flags in cqes:
                if ud in owners:
                    owners[ud]._on_quick_failed(res)  # a second call (below) finds nothing
        self._settled = self._batch
        handlers = self._handlers
        cache = self._cache
        i = 0
        try:
            for i, (ud, res, flags) in enumerate(cqes):  # noqa: B007 (i is read after an escape)
                handler = handlers.get(ud)
                if handler is not None:
                    if not flags & _F_MORE:
                        del handlers[ud]
                    handler(res, flags)
                    continue
                entry = cache.pop(ud, None)
                if entry is not None:
                    self._complete(ud, res, entry)
                    continue
                owner = self._quick_owners.get(ud)
                if owner is not None:  # a quick send fell short or failed
                    owner._on_quick_failed(res)
        except BaseException:
            # SystemExit / KeyboardInterrupt from a protocol: the rest of
            # the batch is dispatched at the next turn, not lost.
            self._leftover = cqes[i + 1 :]
            raise
        self._settled = self._batch
        if self._waiting:
            waiting = self._waiting
            self._waiting = []
            for transport in waiting:
                transport._quick_settled()
        return []

    def _complete(self, ud: int, res: int, entry: tuple) -> None:
        fut, obj, _keeper, finish = entry
        if fut is None:  # an add_reader/add_writer poll
            if finish is not None:
                finish(res)
            return
        if fut.done():
            discard = getattr(finish, "discard", None)
            if res >= 0 and discard is not None:
                discard(res)
            return
        if res == -errno.ECANCELED or (self._stopped_serving and obj in self._stopped_serving):
            fut._proactor = None
            fut.cancel()
            return
        try:
            value = finish(res)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # the caller's, not the loop's, to handle
            fut.set_exception(exc)
        else:
            if value is _AGAIN:
                self._cache[ud] = entry
            else:
                fut.set_result(value)

    def _stop_serving(self, obj) -> None:
        """Called just before a listening socket is closed: cancel what is
        parked on it and submit now, so the kernel drops its reference to
        the socket and the port stops accepting."""
        self._stopped_serving.add(obj)
        if self._ring is None:
            return
        try:
            fd = obj.fileno()
        except (AttributeError, OSError, ValueError):
            return
        if fd >= 0:
            for ud, entry in list(self._cache.items()):
                if entry[1] is obj:
                    self._ring.prep_cancel(ud, _UD_IGNORE)
            self._ring.submit_and_wait(0)

    def close(self) -> None:
        """Cancel every operation, then wait for all their completions:
        no buffer is freed while the kernel may still write into it."""
        if self._ring is None:
            return
        for ud, (fut, *_rest) in list(self._cache.items()):
            if fut is not None and not fut.done():
                fut._proactor = None
                fut.cancel()
            self._ring.prep_cancel(ud, _UD_IGNORE)
        # Stream requests: their transports are gone or going; the final
        # completions only release the pool's buffers and the sends' bytes.
        for ud in list(self._handlers):
            self._handlers[ud] = _ignore_completion
            self._ring.prep_cancel(ud, _UD_IGNORE)
        for _ in range(200):  # ~10 s: cancels normally complete in one turn
            if not self._cache and not self._handlers:
                break
            self.select(0.05)
        ring, self._ring = self._ring, None
        if self._pool is not None:
            try:
                if self._handlers:
                    raise BufferError("a request the kernel did not end")
                self._pool_view.release()
                self._pool.close()
            except BufferError:
                # A request not ended, or a view of the pool still held
                # somewhere: its memory stays mapped rather than freed
                # under the kernel's (or the holder's) feet.
                uring.buffers.GRAVEYARD.append(self._pool)
            self._pool = None
        ring.close()  # anything still in flight is parked by the ring itself
        self._cache.clear()
        self._handlers.clear()
        self._staged.clear()
        self._joining.clear()
        self._quick_owners.clear()
        self._waiting.clear()

    def __del__(self) -> None:
        ring = getattr(self, "_ring", None)
        if ring is not None:
            ring.close()


def _ignore_completion(res: int, flags: int) -> None:
    pass


def _make_ring(entries: int):
    # SUBMIT_ALL (5.18): one enter submits every queued SQE even if one
    # fails.  COOP_TASKRUN (5.19): completions are posted when we next enter
    # the kernel, without interrupting us.  TASKRUN_FLAG (5.19): the kernel
    # then says so in the SQ flags, which lets select(0) skip its enter when
    # nothing is queued and nothing is pending (Ring.needs_enter).
    flag_ladder = (
        uring.IORING_SETUP_SUBMIT_ALL | uring.IORING_SETUP_COOP_TASKRUN | uring.IORING_SETUP_TASKRUN_FLAG,
        uring.IORING_SETUP_SUBMIT_ALL,
        0,
    )
    last = None
    for flags in flag_ladder:
        try:
            return uring.Ring(entries, cq_entries=entries * 8, flags=flags, try_flags=False)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            last = exc
    raise last


def _is_write_only(pipe) -> bool:
    try:
        fd = pipe.fileno()
        write_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
        return write_only and stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError):
        return False
