"""Server lifecycle shared by every model: configuration, the listening socket,
the ready line, the open-file limit and signal handling.

``iomodels.serve.run`` puts them together for the CLI.  A model subclasses
:class:`BaseServer` and implements ``serve_forever()``:
install its stop handlers, call ``self.announce()`` once it can accept, serve
until stopped, and leave no socket, thread or child process behind.

Stopping (SIGINT or SIGTERM): stop accepting, flush what can be flushed,
close every connection, return.  A second signal aborts every connection and
returns at once.  The exit status is 0 either way.

The budget, ``graceful_timeout_s``, is the whole stop, from the signal to the
process's exit: the flush, the aborts, joining threads, reaping children and
the interpreter's own exit.  So the model starts the clock at the first
signal (``note_stop_signal``) and every later step waits only for what is
left of it: the flush until ``flush_deadline``, which keeps ``exit_reserve()``
back for the rest, and joining or reaping until ``stop_deadline``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from iomodels.core.offload import WorkerPool
from iomodels.core.protocol import Protocol

log = logging.getLogger("iomodels")

RECV_SIZE = 64 * 1024  # bytes per recv(): 256 KiB (asyncio's) costs an mmap'd malloc per call
ACCEPT_RETRY_DELAY_S = 1.0  # after EMFILE/ENFILE, as asyncio's constants.ACCEPT_RETRY_DELAY
# accept() errors that mean "out of a resource": stop accepting for a while, never spin.
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() errors that concern only the connection being accepted: skip it.
ACCEPT_SKIP_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ETIMEDOUT})
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Of the stop budget, what the flush leaves for the rest of the stop: aborting
# what is still open, joining threads, reaping children, the interpreter's
# exit (tens of ms here; the margin is for a loaded machine).  At most a fifth
# of the budget, so that a short budget still flushes for most of its length.
EXIT_RESERVE_S = 0.3


def exit_reserve(graceful_timeout_s: float) -> float:
    return min(EXIT_RESERVE_S, graceful_timeout_s / 5)


@dataclass(frozen=True)
class ServerConfig:
    model: str
    protocol: str = "upper"
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8  # threadpool workers
    backlog: int = 2048
    max_connections: int = 0  # 0: unlimited
    idle_timeout_s: float = 0.0  # 0: never
    graceful_timeout_s: float = 5.0
    poll_interval_s: float = 0.0  # nonblocking: sleep between sweeps (the seed's time.sleep)
    sigio_classic: bool = False  # sigio: plain SIGIO without the descriptor (rescan everything)
    uring_quick_sends: bool = True  # io_uring: sends post a CQE only on failure, where supported
    offload_workers: int = 4  # threads behind transport.run_in_worker (core/offload.py)
    # --workers (supervisor.py, docs/workers.md); 0: one process, no supervisor
    workers: int = 0
    shared_listener: bool = False  # one listening socket inherited by every worker
    drain_delay_s: float = 0.0  # on SIGTERM: /health says 503 but serving goes on this long
    # --protocol http (protocols/http/, docs/http.md)
    http_keepalive_timeout_s: float = 5.0  # idle keep-alive connection closed after this
    http_header_timeout_s: float = 10.0  # first byte of a request to the end of its head
    http_max_body: int = 1024**3  # bytes; over it: 413
    http_min_body_rate: float = 240.0  # bytes/s after a 5 s grace; 0: no minimum
    http_app: str = ""  # --app MODULE:CALLABLE, a WSGI app (protocols/http/wsgi.py)
    http_app_inline: bool = False  # --app-inline: run it on the event loop's thread


@dataclass
class ServerState:
    """What the layers above a server may read while it runs, shared by the
    server and the protocol factory (``protocols.resolve(spec, state)``): an
    HTTP /health route answers 503 once ``stopping`` is set.  The model sets
    ``stopping`` at the first stop signal, before anything else."""

    model: str
    protocol: str
    stopping: bool = False


def raise_nofile_limit() -> int:
    """Raise the open-file soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def make_listener(
    host: str, port: int, backlog: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """A bound, listening TCP socket; IPv6 when ``host`` is an IPv6 address.

    ``reuse_port``: SO_REUSEPORT, so that several sockets (one per worker,
    supervisor.py) listen on one port and the kernel spreads connections
    over them.  ``listen=False``: bound only, which holds the port without
    joining the group that receives connections."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if listen:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def release_listener(sock: socket.socket) -> None:
    """Take a listening socket out of service, its descriptor still open:
    shutdown() on a listener stops it listening (Linux: tcp_disconnect ->
    inet_csk_listen_stop), so a blocked accept() fails with EINVAL and an
    SO_REUSEPORT group stops routing connections to it; what was queued on
    it is reset, or moved to another socket of the group where
    net.ipv4.tcp_migrate_req is 1 (Linux 5.14+).  Never on a socket other
    processes still accept on: it would stop for them too."""
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:  # already closed, or never listened
        pass


def ready_line(listener: socket.socket, model: str, protocol: str) -> str:
    host, port = listener.getsockname()[:2]
    if listener.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"listening on {host}:{port} model={model} protocol={protocol}"


class ReadyLine(NamedTuple):
    host: str  # as connect() takes it: "::1", not "[::1]"
    port: int
    model: str
    protocol: str


_READY_LINE = re.compile(r"listening on (\[[0-9A-Fa-f:.%\w]+\]|[^\s:\[\]]+):(\d+) model=(\S+) protocol=(\S+)")


def parse_ready_line(line: str) -> ReadyLine:
    """The one reader of :func:`ready_line`'s output; ValueError if ``line`` is not one."""
    m = _READY_LINE.fullmatch(line.strip())
    if m is None or not 0 < int(m.group(2)) <= 65535:
        raise ValueError(f"not a ready line (listening on HOST:PORT model=M protocol=P): {line!r}")
    host = m.group(1)
    return ReadyLine(host[1:-1] if host.startswith("[") else host, int(m.group(2)), m.group(3), m.group(4))


def configure_accepted(sock: socket.socket) -> None:
    """Options every model sets on an accepted socket, so that they compare fairly.
    TCP_NODELAY as asyncio and uvloop do: replies go out at once, not after
    Nagle's 40 ms delayed-ACK wait."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # the peer may already have gone
        pass


class StderrHandler(logging.Handler):
    """Log records go to fd 2 with one os.write() each, no Python-level buffer.

    Signal handlers log (they run in the main thread between bytecodes), and
    the main thread may be inside sys.stderr's BufferedWriter at that moment:
    a second write into it raises "RuntimeError: reentrant call".  os.write()
    has no such state, and one call per record keeps lines whole.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(2, data) :]
        except Exception:
            self.handleError(record)


def configure_logging(level: int) -> None:
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s iomodels[%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class BaseServer:
    """One model's server.  State lives here, never in module globals."""

    name: ClassVar[str]

    def __init__(
        self,
        config: ServerConfig,
        protocol_factory: Callable[[], Protocol],
        listener: socket.socket,
        announce: Callable[[], None] | None = None,
        state: ServerState | None = None,
    ) -> None:
        self.config = config
        self.state = state if state is not None else ServerState(config.model, config.protocol)
        self.protocol_factory = protocol_factory
        self.listener = listener
        self._announce = announce
        self.workers = WorkerPool(config.offload_workers)  # transport.run_in_worker()
        self.stop_started: float | None = None  # time.monotonic() at the first stop signal

    # ---- the stop budget (see the module docstring)

    def note_stop_signal(self) -> None:
        """The first stop signal, before anything else: the state says
        stopping, and the budget's clock starts.  Later calls keep both.
        Safe in a signal handler (no lock, no IO)."""
        self.state.stopping = True
        if self.stop_started is None:
            self.stop_started = time.monotonic()

    @property
    def flush_deadline(self) -> float:
        """When flushing ends and whatever is still open is aborted."""
        graceful_s = self.config.graceful_timeout_s
        return self._stop_origin() + graceful_s - exit_reserve(graceful_s)

    @property
    def stop_deadline(self) -> float:
        """When joining and reaping end: half the reserve is the interpreter's exit."""
        graceful_s = self.config.graceful_timeout_s
        return self._stop_origin() + graceful_s - exit_reserve(graceful_s) / 2

    def _stop_origin(self) -> float:
        if self.stop_started is None:  # stopping without a signal (a test, an embedder)
            self.note_stop_signal()
        return self.stop_started

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") if the model can run here, else (False, why).  Probe for real."""
        return True, ""

    def announce(self) -> None:
        """Called by the model once it accepts and its signal handlers are in place."""
        if self._announce is not None:
            self._announce()

    def serve_forever(self) -> None:
        raise NotImplementedError

    def stop_accepting(self, release: bool = False) -> None:
        """A supervisor's worker retiring (supervisor.py): accept no new
        connection, keep serving the open ones until the stop signal.
        ``release``: also :func:`release_listener` (a socket of this worker's
        own, never a shared one).  Safe in a signal handler: models queue
        the work for their loop."""
        raise NotImplementedError

    def statistics(self) -> dict[str, int | float]:
        return {}


class StopSignals:
    """Install SIGINT/SIGTERM handlers: the first calls ``first``, later ones ``again``.

    The handlers run in the main thread between bytecodes (Python signal
    semantics), so they must not take locks the main thread may hold.
    """

    def __init__(self, first: Callable[[], None], again: Callable[[], None]) -> None:
        self._first = first
        self._again = again
        self.count = 0
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: object) -> None:
        # Act first, log second: should the log line fail, the stop still happens.
        self.count += 1
        if self.count == 1:
            self._first()
            log.info("signal %s: stopping (again to exit at once)", signal.Signals(signum).name)
        else:
            self._again()
            log.info("signal %s again: exiting now", signal.Signals(signum).name)

    def install(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
