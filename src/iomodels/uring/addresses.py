"""Addresses and message headers the kernel reads from our memory.

CONNECT takes a ``struct sockaddr``; SENDMSG / RECVMSG a ``struct msghdr``
that points at an iovec and at a sockaddr buffer the kernel fills in with
the sender's address.  These build and read them for the families Python
names numerically (IPv4, IPv6, Unix paths); the caller keeps every object
returned here alive until the operation's completion is reaped (see
``Ring.prep_connect`` / ``prep_sendmsg`` / ``prep_recvmsg``).
"""

from __future__ import annotations

import ctypes
import socket
import struct

SOCKADDR_STORAGE = 128  # sizeof(struct sockaddr_storage)


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


def msghdr(data_addr: int, data_len: int, name_addr: int, name_len: int) -> tuple[Msghdr, Iovec]:
    """A one-iovec msghdr; both structures must outlive the operation."""
    iov = Iovec(data_addr, data_len)
    msg = Msghdr(name_addr or None, name_len, ctypes.addressof(iov), 1, None, 0, 0)
    return msg, iov
