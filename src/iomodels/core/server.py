"""Server lifecycle shared by every model: configuration, the listening socket,
the ready line, the open-file limit and signal handling.

A model subclasses :class:`BaseServer` and implements ``serve_forever()``:
install its stop handlers, call ``self.announce()`` once it can accept, serve
until stopped, and leave no socket, thread or child process behind.

Stopping (SIGINT or SIGTERM): stop accepting, flush what can be flushed for
up to ``graceful_timeout_s``, close every connection, return.  A second signal
aborts every connection and returns at once.  The exit status is 0 either way.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

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


def make_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening TCP socket; IPv6 when ``host`` is an IPv6 address."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def ready_line(listener: socket.socket, model: str, protocol: str) -> str:
    host, port = listener.getsockname()[:2]
    if listener.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"listening on {host}:{port} model={model} protocol={protocol}"


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
    ) -> None:
        self.config = config
        self.protocol_factory = protocol_factory
        self.listener = listener
        self._announce = announce
        self.workers = WorkerPool(config.offload_workers)  # transport.run_in_worker()

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


def run(config: ServerConfig) -> int:
    """Serve until stopped; the CLI's ``serve``.  Raises IOModelsError for bad input."""
    from iomodels import models, protocols

    server_cls = models.get(config.model)  # raises UnknownModel / ModelUnavailable
    state = ServerState(config.model, config.protocol)
    protocol_factory = protocols.resolve(config.protocol, state, config)  # raises IOModelsError
    limit = raise_nofile_limit()
    listener = make_listener(config.host, config.port, config.backlog)

    def announce() -> None:
        sys.stdout.write(ready_line(listener, config.model, config.protocol) + "\n")
        sys.stdout.flush()
        log.info("model=%s protocol=%s open-file limit=%d", config.model, config.protocol, limit)

    server = server_cls(config, protocol_factory, listener, announce)
    try:
        server.serve_forever()
    finally:
        server.workers.shutdown()
        listener.close()
    log.info("stopped")
    return 0
