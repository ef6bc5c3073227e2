"""Test helpers: start ``iomodels serve`` as a subprocess, talk to it, clean up.

Every server runs in a session of its own (start_new_session=True), so a test
can check that no process of its group outlives it, and the cleanup can kill
the whole group whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from iomodels import models

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"
READY_RE = re.compile(r"^listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+) model=(\S+) protocol=(\S+)$")
READY_TIMEOUT_S = 15.0
IO_TIMEOUT_S = 10.0


def model_params() -> list:
    """Every registered model; the unavailable ones skip with the registry's reason."""
    import pytest

    params = []
    for name in models.names():
        ok, reason = models.available(name)
        marks = [] if ok else [pytest.mark.skip(reason=f"{name}: {reason}")]
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def raise_nofile(minimum: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < minimum:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(minimum, soft)), hard))


class Server:
    """A running ``iomodels serve``; use as a context manager."""

    def __init__(
        self,
        model: str,
        *args: str,
        protocol: str = "echo",
        nofile: int | None = None,
        host: str = "127.0.0.1",
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.argv = [
            sys.executable,
            "-m",
            "iomodels",
            "serve",
            "--model",
            model,
            "--protocol",
            protocol,
            "--host",
            host,
            "--port",
            "0",
            "--log-level",
            "debug",
            *args,
        ]
        # The server appends to a file of its own (O_APPEND): reading it here
        # never moves the server's write offset.
        fd, path = tempfile.mkstemp(prefix="iomodels-stderr-")
        os.close(fd)
        self._stderr_path = Path(path)
        stderr = open(self._stderr_path, "ab")  # noqa: SIM115
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC_DIR), str(TESTS_DIR), env.get("PYTHONPATH", "")])

        def before_exec() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if preexec is not None:
                preexec()

        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            env=env,
            preexec_fn=before_exec if nofile is not None or preexec is not None else None,
        )
        stderr.close()
        self.pid = self.proc.pid
        self.ready_line = self._read_ready_line()
        match = READY_RE.match(self.ready_line)
        assert match, f"bad ready line {self.ready_line!r}"
        self.host = match.group(1).strip("[]")
        self.port = int(match.group(2))

    def _read_ready_line(self) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT_S
        buf = b""
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise AssertionError(f"no ready line within {READY_TIMEOUT_S}s; stderr:\n{self.stderr()}")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.proc.wait(5)
                    raise AssertionError(
                        f"server exited {self.proc.returncode} before ready; stderr:\n{self.stderr()}"
                    )
                buf += chunk
        finally:
            sel.close()
        line, _, rest = buf.partition(b"\n")
        assert not rest, f"stdout carried more than the ready line: {rest!r}"
        return line.decode()

    # ---- talking

    def connect(self, timeout: float = IO_TIMEOUT_S) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def exchange(self, data: bytes, timeout: float = IO_TIMEOUT_S) -> bytes:
        """Send everything, half-close, read until EOF."""
        with self.connect(timeout) as sock:
            return send_and_drain(sock, data)

    def canary(self) -> None:
        """The server still answers a fresh client."""
        assert self.exchange(b"canary\n") in (b"canary\n", b"CANARY\n")

    # ---- state

    def stderr(self) -> str:
        return self._stderr_path.read_bytes().decode(errors="replace")

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (and its reaped children)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(x) for x in fields[11:15]) / ticks

    def rss_bytes(self) -> int:
        """RSS of the server and every process of its group."""
        total = 0
        for pid in group_pids(self.pid):
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                pass
        return total

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Signal the server; return (exit status, seconds it took)."""
        start = time.monotonic()
        self.proc.send_signal(signum)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"server did not exit within {timeout}s of {signum}; stderr:\n{self.stderr()}"
            ) from None
        return status, time.monotonic() - start

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # and anything left in its group
        self.proc.stdout.close()
        self._stderr_path.unlink(missing_ok=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_in_this_thread(
    server_cls: type, drive: Callable[[int], None], protocol: type | None = None, **config
):
    """Serve in this (main) thread, where signal handlers can be installed;
    ``drive(port)`` runs in a thread and SIGTERMs us when it is done.  For
    the tests that look inside a loop server (its statistics, its tables).
    ``config``: ServerConfig fields.  Checks that the server restored
    SIGTERM's handler and left no connection behind; returns the server."""
    import threading

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
    """Live (non-zombie) processes whose process group is ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                after = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = after[0], int(after[2])
        if pgrp == pgid and state != "Z":
            pids.append(int(entry))
    return pids


def wait_group_gone(pgid: int, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = group_pids(pgid)
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


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


def recv_exactly(sock: socket.socket, n: int, timeout: float = IO_TIMEOUT_S) -> bytes:
    sock.settimeout(timeout)
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def expect_eof(sock: socket.socket, timeout: float = IO_TIMEOUT_S) -> bool:
    """True if the server closes (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
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
