"""The one test-support module: run ``iomodels serve``, talk to it, clean up.

Both suites use it: the conformance suite (tests/conformance/, every
behaviour over every model) and the black-box acceptance suite
(tests/contract/, what only it checks), as do the model tests.

  Server            ``iomodels serve`` in a session of its own, on
                    iomodels.harness.ServerProcess (ready line, CPU, group
                    kill); what a test adds: limits, the log, clients
  Flood             the client that sends without reading, until the
                    server stops reading (back-pressure, stuck clients)
  recv_exactly ...  socket helpers with deadlines and messages that say
                    what was missing
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path

from iomodels import models
from iomodels.core.server import raise_nofile_limit
from iomodels.harness import ServerProcess, session_group

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"
IO_TIMEOUT_S = 10.0


def model_params(only: Collection[str] | None = None) -> list:
    """Every registered model (or those of ``only``); the unavailable ones skip
    with the registry's reason."""
    import pytest

    params = []
    for name in models.names():
        if only is not None and name not in only:
            continue
        ok, reason = models.available(name)
        marks = [] if ok else [pytest.mark.skip(reason=f"{name}: {reason}")]
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def raise_nofile(minimum: int) -> None:
    """This test process needs ``minimum`` descriptors: raise the soft limit to the hard one."""
    soft = raise_nofile_limit()
    if soft != resource.RLIM_INFINITY and soft < minimum:
        raise AssertionError(f"the open-file hard limit here is {soft}; this test needs {minimum}")


class Server(ServerProcess):
    """A running ``iomodels serve``, as a context manager.

    ``args`` are extra CLI flags.  ``protocol``, ``host`` or ``port`` None
    leaves the flag out, so that the CLI's default shows.  ``nofile`` (n or
    (soft, hard)), ``rlimits`` ({resource.RLIMIT_X: (soft, hard)}) and
    ``preexec`` go to ServerProcess, which applies them in the child.  The
    server logs at debug level; :meth:`stderr` reads it, and tests/ is on
    its PYTHONPATH for ``--protocol faulty:...``.
    """

    def __init__(
        self,
        model: str,
        *args: str,
        protocol: str | None = "echo",
        host: str | None = "127.0.0.1",
        port: int | None = 0,
        nofile: int | tuple[int, int] | None = None,
        rlimits: Mapping[int, tuple[int, int]] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        argv = [sys.executable, "-m", "iomodels", "serve", "--model", model, "--log-level", "debug"]
        for flag, value in (("--protocol", protocol), ("--host", host), ("--port", port)):
            if value is not None:
                argv += [flag, str(value)]
        argv += args
        path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
        # PYTHONUNBUFFERED empty: the server must flush its ready line itself.
        env = {"PYTHONPATH": path, "PYTHONUNBUFFERED": ""}
        super().__init__(
            model, command=argv, env=env, nofile=nofile, rlimits=rlimits, preexec=preexec, log_level="debug"
        )
        self.start()
        self.stdout_rest = self.stdout_after_ready  # and what comes before the exit, read at stop()

    @property
    def ready_line(self) -> str:
        """The ready line as printed: parse_ready_line matches the whole line, so
        formatting its fields back gives the line (but for surrounding blanks)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"listening on {host}:{self.port} model={self.ready.model} protocol={self.ready.protocol}"

    # ---- talking

    def connect(self, timeout: float = IO_TIMEOUT_S) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def exchange(self, data: bytes, timeout: float = IO_TIMEOUT_S) -> bytes:
        """Send everything, half-close, read until EOF."""
        with self.connect(timeout) as sock:
            return send_and_drain(sock, data)

    def canary(self, retry_for: float = 0.0) -> None:
        """The server is alive and answers a fresh client, at once or, for a
        state it leaves only once it has noticed something (descriptors or a
        connection slot freed), within ``retry_for`` seconds."""
        deadline = time.monotonic() + retry_for
        while True:
            assert self.alive(), f"server died: status {self.returncode}; stderr:\n{self.stderr()[-3000:]}"
            try:
                reply = self.exchange(b"canary\n", timeout=5)
                assert reply in (b"canary\n", b"CANARY\n"), f"canary answered {reply!r}"
                return
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # ---- state

    def stderr(self) -> str:
        return self.log_text()

    def rss_bytes(self) -> int:
        """RSS of the server and every process of its group."""
        return sum(int(fields[21]) for _, fields in session_group(self.pgid)) * os.sysconf("SC_PAGE_SIZE")

    def send_signal(self, signum: int) -> None:
        self.signal(signum)

    def stop(
        self, signum: int = signal.SIGTERM, timeout: float = 10.0, *, group: bool = False
    ) -> tuple[int | None, float]:
        """Send ``signum`` (to the whole process group if ``group``, as Ctrl-C
        at a terminal does); wait up to ``timeout`` seconds for the exit; kill
        what is left of the session.  Returns (exit status, seconds to exit);
        the status is None if the server did not exit in time (it is killed
        then).  A test's assertion, where ServerProcess.stop is a cleanup."""
        if self.proc is None or self.proc.stdout is None or self.proc.stdout.closed:
            return (self.proc.returncode if self.proc else None), 0.0  # stopped already
        start = time.monotonic()
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signum)
        else:
            self.signal(signum)
        status = self.wait(timeout)
        took = time.monotonic() - start
        if status is not None:
            self.stdout_rest += _read_to_eof(self.proc.stdout.fileno(), 0.5)
        super().stop(signal.SIGKILL, 0.0)
        return status, took

    def kill(self) -> None:
        super().stop(signal.SIGKILL, 0.0)

    def close(self) -> None:
        self.stop()


def _read_to_eof(fd: int, timeout: float) -> bytes:
    """What is left on a pipe whose writer has exited (its children may hold it: bounded)."""
    out = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out


def serve_in_this_thread(
    server_cls: type, drive: Callable[[int], None], protocol: type | None = None, **config
):
    """Serve in this (main) thread, where signal handlers can be installed;
    ``drive(port)`` runs in a thread and SIGTERMs us when it is done.  For
    the tests that look inside a loop server (its statistics, its tables).
    ``config``: ServerConfig fields.  Checks that the server restored
    SIGTERM's handler and left no connection behind; returns the server."""
    from iomodels.core.server import ServerConfig, make_listener
    from iomodels.protocols.echo import EchoProtocol

    cfg = ServerConfig(model=server_cls.name, protocol="echo", host="127.0.0.1", port=0, **config)
    listener = make_listener("127.0.0.1", 0, 128)
    port = listener.getsockname()[1]
    ready = threading.Event()
    server = server_cls(cfg, protocol or EchoProtocol, listener, ready.set)
    errors: list[BaseException] = []

    def driver() -> None:
        try:
            assert ready.wait(10)
            drive(port)
        except BaseException as exc:
            errors.append(exc)
        finally:
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=driver)
    previous = signal.getsignal(signal.SIGTERM)
    thread.start()
    try:
        server.serve_forever()
    finally:
        thread.join(10)
        listener.close()
    assert signal.getsignal(signal.SIGTERM) == previous
    assert not errors, errors
    assert not server._connections and not getattr(server, "_zombies", None)
    return server


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the server whose pid is ``pgid`` (its
    session: every server is started in a session of its own)."""
    return [pid for pid, _ in session_group(pgid)]


def wait_group_gone(pgid: int, timeout: float = 5.0) -> list[int]:
    """The processes of ``pgid``'s group still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pids = group_pids(pgid)
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


# ---- clients


def send_and_drain(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` while reading replies (never deadlocks on full buffers),
    half-close, and read until EOF."""
    received = bytearray()
    view = memoryview(data)
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if view else 0))
    sent_all = not view
    if sent_all:
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + IO_TIMEOUT_S
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no EOF within {IO_TIMEOUT_S}s; got {len(received)} bytes")
            for _key, mask in sel.select(left):
                if mask & selectors.EVENT_WRITE and view:
                    try:
                        n = sock.send(view[: 256 * 1024])
                    except BlockingIOError:
                        n = 0
                    view = view[n:]
                    if not view:
                        sock.shutdown(socket.SHUT_WR)
                        sent_all = True
                        sel.modify(sock, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(256 * 1024)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        assert sent_all, "server closed before the client finished sending"
                        return bytes(received)
                    received += chunk
                    deadline = time.monotonic() + IO_TIMEOUT_S
    finally:
        sel.close()
        sock.setblocking(True)


def recv_exactly(sock: socket.socket, n: int, timeout: float = IO_TIMEOUT_S, what: str = "reply") -> bytes:
    """Exactly ``n`` bytes within ``timeout`` seconds in all; EOFError or
    TimeoutError saying how much of ``what`` came."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what}: {len(buf)} of {n} bytes in {timeout}s: ...{bytes(buf[-100:])!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(1 << 20, n - len(buf)))
        except TimeoutError:
            continue
        if not chunk:
            raise EOFError(f"{what}: EOF after {len(buf)} of {n} bytes: ...{bytes(buf[-100:])!r}")
        buf += chunk
    return bytes(buf)


def roundtrip(sock: socket.socket, data: bytes, expected: bytes | None = None, timeout: float = 5.0) -> None:
    """Send ``data``; ``expected`` (default: ``data``) comes back within ``timeout``."""
    expected = data if expected is None else expected
    sock.sendall(data)
    got = recv_exactly(sock, len(expected), timeout, what=f"reply to {data[:40]!r}")
    assert got == expected, f"sent {data[:80]!r}: expected {expected[:80]!r}, got {got[:80]!r}"


def read_slowly(port: int, content: bytes) -> None:
    """Connect, say "go", and read ``content`` at ~1.6 MB/s through a 64 KiB
    window: 0.64 MiB per 0.4 s, less than one splice step (io_uring) or
    loop.sendfile() piece (asyncio, aio) of 1 MiB per idle-timeout period of
    0.4 s, so only the peer's acknowledged bytes (tcp_bytes_acked) can show
    the server its progress in time.  AssertionError if it is cut short."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # the window: the pace is ours
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    sock.sendall(b"go")
    got = bytearray()
    start = time.monotonic()
    while len(got) < len(content):
        chunk = sock.recv(min(64 * 1024, len(content) - len(got)))
        assert chunk, f"cut after {len(got)} bytes, {time.monotonic() - start:.2f} s"
        got += chunk
        time.sleep(0.04)
    took = time.monotonic() - start
    sock.close()
    assert bytes(got) == content and took > 1.0, took


def recv_until_eof(sock: socket.socket, timeout: float = IO_TIMEOUT_S) -> tuple[bytes, str]:
    """Everything until the server closes: (data, "eof" or "reset"); TimeoutError after ``timeout``."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no EOF within {timeout}s; got {len(buf)} bytes: ...{bytes(buf[-100:])!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk


def expect_eof(sock: socket.socket, timeout: float = IO_TIMEOUT_S) -> bool:
    """True if the server closes (EOF or reset) within ``timeout``; what came before is dropped."""
    try:
        recv_until_eof(sock, timeout)
    except TimeoutError:
        return False
    return True


def no_reply_within(sock: socket.socket, seconds: float) -> bool:
    """True if nothing (no byte, no EOF) arrives within ``seconds``; consumes nothing."""
    sock.settimeout(seconds)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    return False


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), whatever is unread."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Flood:
    """A client that sends ``block`` ``count`` times (None: until stopped)
    without reading, in a thread, so that a test can see the server stop
    reading (back-pressure) or hold output it cannot flush (a stuck client).

    The thread waits for writability with a short timeout and sends without
    blocking, so it never holds the socket's timeout against the test's
    reader, and it stops within 0.2 s of :meth:`stop`."""

    def __init__(self, sock: socket.socket, block: bytes, count: int | None = None) -> None:
        self.sock, self.block, self.count = sock, block, count
        self.sent = 0
        self.last_progress = time.monotonic()
        self.done = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def total(self) -> int | None:
        return None if self.count is None else len(self.block) * self.count

    def sha256(self) -> str:
        """Digest of everything a finite flood sends."""
        digest = hashlib.sha256()
        for _ in range(self.count or 0):
            digest.update(self.block)
        return digest.hexdigest()

    def start(self) -> Flood:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            blocks = range(self.count) if self.count is not None else iter(int, 1)
            for _ in blocks:
                view = memoryview(self.block)
                while view:
                    if self._stop.is_set():
                        return
                    if not select.select([], [self.sock], [], 0.2)[1]:
                        continue
                    try:
                        n = self.sock.send(view[:65536], socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                    view = view[n:]
                    self.sent += n
                    self.last_progress = time.monotonic()
            self.done = True
        except (OSError, ValueError) as exc:  # ValueError: the test closed the socket
            self.error = exc

    def wait_stalled(self, quiet: float = 0.5, timeout: float = 30.0) -> bool:
        """True once no byte went out for ``quiet`` seconds; False if the
        flood finished or failed first; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.done or self.error is not None:
                return False
            if time.monotonic() - self.last_progress > quiet:
                return True
            time.sleep(0.05)
        raise AssertionError(f"the flood neither stalled nor finished in {timeout}s ({self.sent} bytes sent)")

    def wait_ended(self, timeout: float) -> bool:
        """True once the thread has ended: the flood was sent, or the server closed the connection."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the flood still runs after {timeout}s ({self.sent} bytes sent)"

    def stop(self) -> None:
        self._stop.set()
        self.join(5)


def stuck_client(server: Server) -> tuple[socket.socket, Flood]:
    """A client with a tiny receive window that floods without reading, once
    the server has output pending that it cannot flush."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect((server.host, server.port))
    flood = Flood(sock, b"z" * 65536).start()
    assert flood.wait_stalled(quiet=0.5, timeout=15), f"the flood ended: {flood.error!r}"
    return sock, flood


@contextlib.contextmanager
def many_connections(server: Server, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connected, idle client sockets, closed on exit."""
    raise_nofile(count + 200)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection((server.host, server.port), timeout=IO_TIMEOUT_S))
        yield socks
    finally:
        for sock in socks:
            sock.close()
