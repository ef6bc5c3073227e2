"""io_uring model: a staged reply whose SQE is already in the SQ when the
enter fails (before submitting) goes out once, not twice, during the
shutdown that follows."""

import ctypes
import errno
import socket
import threading

import pytest

from iomodels import uring
from iomodels.core.server import ServerConfig, make_listener
from iomodels.models import io_uring
from iomodels.protocols.echo import EchoProtocol

_OK, _REASON = io_uring.Server.available()


def _quick_supported() -> bool:
    if not _OK:
        return False
    with uring.Ring(8) as ring:
        return ring.supports_quick_send


pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not _quick_supported(), reason="no io_uring quick sends here"),
]


class _State:
    armed = False  # the next enter with SQEs to submit fails (before submitting)
    failed = False


class ReplyThenFailEnter(EchoProtocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # staged as a quick send
        _State.armed = True


def test_failed_enter_does_not_send_a_staged_reply_twice(monkeypatch):
    """_run: prep_quick_sends writes the staged reply's SQE, then
    submit_and_wait raises (an enter error before submission, e.g. ENOMEM
    allocating the task context).  _shutdown finds the reply still in
    Server._quick and queues it *again* next to the SQE already in the SQ:
    the peer gets the reply twice (two quick sends of one socket in one
    submission)."""
    real = uring._syscall

    def enter_fails_once(nr, fd, to_submit, *rest):
        if _State.armed and not _State.failed and nr.value == uring.SYS_IO_URING_ENTER and to_submit > 0:
            _State.failed = True
            ctypes.set_errno(errno.ENOMEM)
            return -1
        return real(nr, fd, to_submit, *rest)

    monkeypatch.setattr(uring, "_syscall", enter_fails_once)
    _State.armed = _State.failed = False

    config = ServerConfig(model="io_uring", protocol="echo", host="127.0.0.1", port=0)
    listener = make_listener("127.0.0.1", 0, 128)
    port = listener.getsockname()[1]
    ready = threading.Event()
    server = io_uring.Server(config, ReplyThenFailEnter, listener, ready.set)
    got = bytearray()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            assert ready.wait(10)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"ping")
                while True:  # until the server's shutdown closes us
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    got.extend(chunk)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        with pytest.raises(OSError) as info:
            server.serve_forever()
        assert info.value.errno == errno.ENOMEM and _State.failed
    finally:
        thread.join(10)
        listener.close()
    assert not thread.is_alive() and not errors, errors
    assert bytes(got) == b"ping"  # once: what write() was given, not twice
