"""io_uring operations that ``iomodels.uring.Ring`` has no ``prep_*`` for yet.

To move into ``iomodels.uring``: each function below queues one SQE through
``Ring._prep``, the ring's one SQE-preparation path that its own ``prep_*``
methods use (all fields written; submits when the SQ is full), and would
become a ``Ring.prep_*`` method as is.  They keep no buffer: the caller
(``UringProactor``) holds every buffer in its own cache until the
operation's completion is reaped.

Opcodes and flags are from linux/io_uring.h; the kernel version that brought
each one is noted beside it.
"""

from __future__ import annotations

import ctypes
import socket
import struct

IORING_OP_POLL_ADD = 6  # 5.1
IORING_OP_SENDMSG = 9  # 5.3
IORING_OP_RECVMSG = 10  # 5.3
IORING_OP_CONNECT = 16  # 5.5
IORING_OP_READ = 22  # 5.6
IORING_OP_WRITE = 23  # 5.6

_U64 = (1 << 64) - 1
# READ/WRITE with offset -1: "use and advance the file position", the only
# offset a pipe accepts besides 0.
_CURRENT_POSITION = _U64


def buffer_address(buf, writable: bool) -> tuple[int, int, object]:
    """``(address, length, keeper)`` of a contiguous buffer.

    ``keeper`` must stay referenced until the kernel is done with the
    memory: for writable buffers it is a ctypes view made with
    ``from_buffer``, which also exports the buffer, so a bytearray cannot be
    resized (moved) under the kernel.  Read-only buffers other than
    ``bytes`` are copied once.
    """
    if not writable and type(buf) is bytes:
        return ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0, len(buf), buf
    view = memoryview(buf)
    n = view.nbytes
    if n == 0:
        return 0, 0, buf
    try:
        keeper = (ctypes.c_char * n).from_buffer(view.cast("B") if view.format != "B" else view)
    except TypeError:
        if writable:
            raise TypeError("the buffer must be writable and contiguous") from None
        data = bytes(view)
        return buffer_address(data, False)
    return ctypes.addressof(keeper), n, keeper


def prep_sqe(
    ring, opcode: int, fd: int, addr: int, length: int, off: int, op_flags: int, user_data: int
) -> None:
    ring._prep(opcode, fd, user_data, 0, addr, length, op_flags, 0, off & _U64)


def prep_poll_add(ring, fd: int, events: int, user_data: int) -> None:
    """One-shot poll: completes with the ready ``POLL*`` mask (``res``)."""
    prep_sqe(ring, IORING_OP_POLL_ADD, fd, 0, 0, 0, events, user_data)


def prep_read(ring, fd: int, addr: int, nbytes: int, user_data: int) -> None:
    """``read(2)`` at the current position (pipes, ttys, any fd)."""
    prep_sqe(ring, IORING_OP_READ, fd, addr, nbytes, _CURRENT_POSITION, 0, user_data)


def prep_write(ring, fd: int, addr: int, nbytes: int, user_data: int) -> None:
    """``write(2)`` at the current position."""
    prep_sqe(ring, IORING_OP_WRITE, fd, addr, nbytes, _CURRENT_POSITION, 0, user_data)


def prep_connect(ring, fd: int, sockaddr: bytes, user_data: int) -> None:
    """``connect(2)``: ``addr`` is the sockaddr, ``off`` its length (the
    kernel's io_uring_prep_connect puts addrlen there)."""
    addr = ctypes.cast(ctypes.c_char_p(sockaddr), ctypes.c_void_p).value or 0
    prep_sqe(ring, IORING_OP_CONNECT, fd, addr, 0, len(sockaddr), 0, user_data)


def sockaddr(family: int, address) -> bytes | None:
    """The ``struct sockaddr_*`` bytes of a numeric address, or None when
    it is not one we can build (the caller then connects another way)."""
    try:
        if family == socket.AF_INET:
            host, port = address[:2]
            return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
        if family == socket.AF_INET6:
            host, port = address[:2]
            flowinfo = address[2] if len(address) > 2 else 0
            scope_id = address[3] if len(address) > 3 else 0
            return (
                struct.pack("=H", family)
                + struct.pack("!HI", port, flowinfo)
                + socket.inet_pton(socket.AF_INET6, host)
                + struct.pack("=I", scope_id)
            )
        if family == socket.AF_UNIX:
            path = address.encode() if isinstance(address, str) else bytes(address)
            if path and path[0] != 0:
                path += b"\0"  # a filesystem path is NUL-terminated; an abstract name is not
            if len(path) > 108:
                return None
            return struct.pack("=H", family) + path
    except (OSError, TypeError, ValueError, struct.error, UnicodeError):
        return None
    return None


class Iovec(ctypes.Structure):  # struct iovec
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):  # struct msghdr (x86-64 layout, padding by ctypes)
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


SOCKADDR_STORAGE = 128  # sizeof(struct sockaddr_storage)


def msghdr(data_addr: int, data_len: int, name_addr: int, name_len: int) -> tuple[Msghdr, Iovec]:
    """A one-iovec msghdr; both structures must outlive the operation."""
    iov = Iovec(data_addr, data_len)
    msg = Msghdr(name_addr or None, name_len, ctypes.addressof(iov), 1, None, 0, 0)
    return msg, iov


def prep_msg(ring, opcode: int, fd: int, msg: Msghdr, msg_flags: int, user_data: int) -> None:
    """SENDMSG / RECVMSG (liburing's prep: ``len`` 1, the msghdr's address)."""
    prep_sqe(ring, opcode, fd, ctypes.addressof(msg), 1, 0, msg_flags, user_data)


def parse_sockaddr(raw: bytes, family: int):
    """The Python address of a ``sockaddr_in`` / ``sockaddr_in6`` (None
    when the kernel wrote no address)."""
    if not raw:
        return None
    if family == socket.AF_INET:
        (port,) = struct.unpack_from("!H", raw, 2)
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6:
        port, flowinfo = struct.unpack_from("!HI", raw, 2)
        (scope_id,) = struct.unpack_from("=I", raw, 24)
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flowinfo, scope_id
    raise ValueError(f"no parser for address family {family}")
