"""The ring's operations on memory the caller keeps: POLL_ADD, READ / WRITE,
CONNECT, SENDMSG / RECVMSG, SPLICE, and ``needs_enter``
(iomodels.uring.ring, iomodels.uring.addresses)."""

import ctypes
import os
import select
import socket

import pytest

from iomodels.uring import IOSQE_IO_LINK, addresses
from iomodels.uring.buffers import buffer_span

from .support import needs_io_uring, wait_for

pytestmark = needs_io_uring


def test_poll_add_completes_with_the_ready_mask(ring, pair):
    a, b = pair
    ring.prep_poll_add(a.fileno(), select.POLLIN, 7)
    ring.submit_and_wait(0)
    assert ring.reap() == []  # nothing to read yet: the poll waits
    b.send(b"x")
    [(ud, res, _flags)] = wait_for(ring, 1)
    assert ud == 7 and res & select.POLLIN


def test_read_and_write_at_the_pipe_position(ring):
    r, w = os.pipe()
    try:
        out = b"through the ring"
        addr, n, _keep_out = buffer_span(out, False, 0, None)
        ring.prep_write(w, addr, n, 1)
        [(_ud, res, _flags)] = wait_for(ring, 1)
        assert res == len(out)
        buf = bytearray(64)
        addr, n, keep_in = buffer_span(buf, True, 0, None)
        ring.prep_read(r, addr, n, 2)
        [(_ud, res, _flags)] = wait_for(ring, 1)
        del keep_in
        assert bytes(buf[:res]) == out
    finally:
        os.close(r)
        os.close(w)


def test_connect_to_a_listener(ring):
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.socket() as client:
        client.setblocking(False)
        raw = addresses.sockaddr(socket.AF_INET, listener.getsockname())
        raw_addr = ctypes.cast(ctypes.c_char_p(raw), ctypes.c_void_p).value
        ring.prep_connect(client.fileno(), raw_addr, len(raw), 3)
        [(_ud, res, _flags)] = wait_for(ring, 1)
        assert res == 0
        conn, _ = listener.accept()
        conn.close()
        assert client.getpeername() == listener.getsockname()


def test_connect_refused_is_a_negative_errno(ring):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        with socket.socket() as client:
            client.setblocking(False)
            raw = addresses.sockaddr(socket.AF_INET, ("127.0.0.1", port))
            raw_addr = ctypes.cast(ctypes.c_char_p(raw), ctypes.c_void_p).value
            ring.prep_connect(client.fileno(), raw_addr, len(raw), 3)
            [(_ud, res, _flags)] = wait_for(ring, 1)
    assert res < 0


def test_sendmsg_and_recvmsg_carry_the_address(ring):
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        tx.bind(("127.0.0.1", 0))
        data = b"datagram"
        raw = addresses.sockaddr(socket.AF_INET, rx.getsockname())
        name = ctypes.create_string_buffer(raw, len(raw))
        addr, n, keep = buffer_span(data, False, 0, None)
        msg, _iov = addresses.msghdr(addr, n, ctypes.addressof(name), len(raw))
        ring.prep_sendmsg(tx.fileno(), ctypes.addressof(msg), 1)
        [(_ud, res, _flags)] = wait_for(ring, 1)
        assert res == len(data)

        buf = bytearray(64)
        addr, n, keep = buffer_span(buf, True, 0, None)
        rname = ctypes.create_string_buffer(addresses.SOCKADDR_STORAGE)
        rmsg, _riov = addresses.msghdr(addr, n, ctypes.addressof(rname), addresses.SOCKADDR_STORAGE)
        ring.prep_recvmsg(rx.fileno(), ctypes.addressof(rmsg), 2)
        [(_ud, res, _flags)] = wait_for(ring, 1)
        del keep
        assert bytes(buf[:res]) == data
        assert addresses.parse_sockaddr(rname.raw[: rmsg.namelen], socket.AF_INET) == tx.getsockname()


def test_splice_file_to_socket_through_a_pipe(ring, pair, tmp_path):
    """File -> pipe -> socket, two linked SPLICEs: how a file is sent
    through the ring without its bytes entering user memory."""
    a, b = pair
    content = os.urandom(20000)
    path = tmp_path / "payload"
    path.write_bytes(content)
    r, w = os.pipe()
    try:
        with open(path, "rb") as f:
            ring.prep_splice(f.fileno(), 1000, w, -1, 8192, 1, sqe_flags=IOSQE_IO_LINK)
            ring.prep_splice(r, -1, a.fileno(), -1, 8192, 2)
            got = {ud: res for ud, res, _flags in wait_for(ring, 2)}
        assert got == {1: 8192, 2: 8192}
        b.settimeout(5)
        received = b""
        while len(received) < 8192:
            received += b.recv(8192 - len(received))
        assert received == content[1000:9192]
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("queued", [False, True])
def test_needs_enter(ring, queued):
    ring.submit_and_wait(0)
    ring.reap()
    if queued:
        ring.prep_nop(9)
        assert ring.needs_enter()
    elif ring._taskrun_flag:
        assert not ring.needs_enter()  # nothing queued, nothing pending
    else:
        assert ring.needs_enter()  # the kernel cannot tell us: always enter
