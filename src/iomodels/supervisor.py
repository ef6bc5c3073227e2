"""``iomodels serve --workers N``: a supervisor process and N workers, each
running the chosen model (docs/workers.md).

The supervisor serves nothing.  It forks the workers (before it starts any
thread, and it never starts one), prints the ready line once every worker
accepts, and from then on only reacts:

  a worker dies        reaped and replaced; one that keeps dying young is
                       replaced after a back-off that doubles (0.1 s .. 10 s)
  SIGTERM / SIGINT     every worker retires (below); exit 0 when none is left
                       (a second signal: SIGKILL to every process below the
                       supervisor, the workers' own children included; exit 0)
  SIGHUP               rolling reload: a new generation of workers starts
                       (importing --protocol MODULE:CALLABLE afresh: the
                       supervisor never imports it); once all of them accept,
                       the old ones retire.  If a new worker dies before it is
                       ready, the old generation stays.
  SIGTTIN / SIGTTOU    one worker more / less (the oldest retires)

Retiring a worker is three signals on one clock, so that HTTP clients see no
failed request (the close race of keep-alive connections, docs/workers.md):

  SIGUSR1   at once: ServerState.stopping, so /health answers 503 and every
            HTTP response says "Connection: close"; accepting goes on for
            --drain-delay seconds (a load balancer's checks notice meanwhile)
  SIGUSR2   then: stop accepting (a worker's own SO_REUSEPORT socket is shut
            down, so the kernel sends new connections to the others and, with
            net.ipv4.tcp_migrate_req=1, moves the queued ones); the open
            connections are served on and close after their next response
  SIGTERM   CLOSE_NOTICE_S later: the model's own stop, which flushes and
            closes what is left within the rest of --graceful-timeout
  SIGKILL   --graceful-timeout after SIGUSR2, to whatever is still there

Signal handlers only enqueue (gunicorn's lesson, b650332c: logging or reaping
in a handler deadlocks); the C-level handler also writes to a socketpair
(signal.set_wakeup_fd) that the loop's select() watches.  Each turn the loop
reads the workers' readiness reports (one line each on a pipe), dispatches
the queued signals, reaps, and reconciles: spawn what is missing, advance the
retirements, finish a reload, announce.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import logging
import os
import queue
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass

from iomodels.core.errors import IOModelsError
from iomodels.core.server import ServerConfig, make_listener, raise_nofile_limit, ready_line

log = logging.getLogger("iomodels")

EXIT_CONFIG = 3  # a worker could not build its server (--protocol does not load): respawning will not help
EXIT_LISTEN = 4  # a worker could not listen (address in use, permission)
BACKOFF_FIRST_S = 0.1  # a worker that died young is replaced after this, doubled each time
BACKOFF_MAX_S = 10.0
STABLE_S = 5.0  # a worker that lived this long resets the back-off
RELOAD_TIMEOUT_S = 30.0  # a new generation not ready by then is abandoned
TURN_MAX_S = 1.0  # the loop reconciles at least this often
# Old workers release their SO_REUSEPORT sockets one after the other: with
# tcp_migrate_req, a closing socket hands its queue to another of the group,
# and two closing at once can hand it to each other and lose it (seen as a
# few reset requests per reload under wrk; none once staggered).
RETIRE_STAGGER_S = 0.05
NOTICE_SIGNAL = signal.SIGUSR1  # to a worker: say stopping (/health 503), serve on
RETIRE_SIGNAL = signal.SIGUSR2  # to a worker: accept no more, serve the open connections
SUPERVISOR_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"
# Models whose accepts on one shared socket all go to a single worker
# (docs/workers.md, "Listening"): said at start, since the default avoids it.
UNBALANCED_WHEN_SHARED = {
    "io_uring": "the accepts armed on one socket are completed for one worker (400 of 400 here)",
    "sigio": "F_SETOWN belongs to the shared socket, so only the last worker to arm it is signalled",
}
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>, Linux 3.4+
KILL_ALL_S = 5.0  # SIGKILLed processes are gone in ms; this bounds a stuck exit (D state)
KILL_ALL_CHECK_S = 0.005


def close_notice_s(graceful_timeout_s: float) -> float:
    """From SIGUSR2 to SIGTERM: long enough for every busy HTTP connection
    to finish one request with "Connection: close" (one round trip; 0.5 s
    covers a loaded machine), at most a quarter of the stop budget."""
    return min(0.5, graceful_timeout_s / 4)


@dataclass
class Worker:
    pid: int
    generation: int
    started: float  # time.monotonic()
    ready: bool = False
    retiring: bool = False
    stop_accept_at: float | None = None  # when SIGUSR2 is due (None: sent, or not retiring)
    term_at: float | None = None  # when SIGTERM is due
    kill_at: float | None = None  # when SIGKILL is due


class Supervisor:
    """One ``serve --workers N``: ``Supervisor(config).run()`` returns the exit status."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.target = config.workers
        self.workers: dict[int, Worker] = {}
        self.generation = 1
        self.reload_generation: int | None = None  # being started by a SIGHUP
        self.reload_deadline = 0.0
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.stopping = False
        self.stop_signals = 0
        self.announced = False
        self.exit_status: int | None = None  # set by a fatal start error
        self.backoff_s = 0.0
        self.next_spawn_at = 0.0
        self.listener: socket.socket | None = None  # --shared-listener: the one socket
        self.port_holder: socket.socket | None = None  # bound, never listening, no SO_REUSEPORT
        self.first_socket: socket.socket | None = None  # the first worker's, listening from the start
        self.worker_config = config
        self._status_buffer = b""

    # ---- start and the loop

    def run(self) -> int:
        from iomodels import models

        models.get(self.config.model)  # raises UnknownModel / ModelUnavailable, as run() does
        limit = raise_nofile_limit()
        config = self.config
        if config.shared_listener:
            self.listener = sock = make_listener(config.host, config.port, config.backlog)
            why = UNBALANCED_WHEN_SHARED.get(config.model)
            if why is not None:
                log.warning(
                    "supervisor: --shared-listener with %s: one worker will take every connection (%s); "
                    "the default, a SO_REUSEPORT socket per worker, spreads them",
                    config.model,
                    why,
                )
        else:
            # Holds the port (--port 0 picks it here) without receiving
            # connections: only listening sockets join the SO_REUSEPORT group.
            # Bound without SO_REUSEPORT, so that it is also the guard against
            # a second server on the port (Linux 6.x, tried here): with
            # SO_REUSEPORT it would bind beside another supervisor's listening
            # workers, and its own workers would join their group and take a
            # share of the connections; without it, it fails with EADDRINUSE
            # as a plain server does.  Our workers still bind: SO_REUSEADDR on
            # both lets them bind beside a socket that does not listen.
            self.port_holder = sock = make_listener(config.host, config.port, config.backlog, listen=False)
            # The holder refuses a second server only once something listens
            # on the port, and the workers listen only after their fork and
            # imports (a few hundred ms): a second supervisor starting then
            # would bind beside us.  So the first worker's socket listens now,
            # made here and inherited, as a plain server's does; connections
            # queue on it until that worker accepts.
            try:
                self.first_socket = make_listener(
                    config.host, sock.getsockname()[1], config.backlog, reuse_port=True
                )
            except BaseException:
                sock.close()
                raise
            _enable_migrate_req()
        port = sock.getsockname()[1]
        # The workers' stop budget is what the supervisor's leaves after the close notice.
        self.worker_config = dataclasses.replace(
            config, port=port, workers=0, graceful_timeout_s=config.graceful_timeout_s - self._notice_s()
        )
        self._ready_text = ready_line(sock, config.model, config.protocol)
        status_r, self._status_w = os.pipe()
        os.set_blocking(status_r, False)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._fds_to_close_in_worker = [status_r, wake_r.fileno(), wake_w.fileno()]
        # Orphans of a dead worker (the processes model's per-connection
        # children) become our children, not init's: a stop can then find and
        # kill them, and we reap them.  Not inherited by the workers.
        if not _become_subreaper():
            log.debug("supervisor: not a subreaper: a dead worker's orphans go to init")
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        previous = {signum: signal.signal(signum, self._enqueue) for signum in SUPERVISOR_SIGNALS}
        log.info(
            "supervisor: model=%s protocol=%s workers=%d listener=%s open-file limit=%d",
            config.model,
            config.protocol,
            self.target,
            "shared" if config.shared_listener else "SO_REUSEPORT per worker",
            limit,
        )
        try:
            return self._loop(status_r, wake_r)
        finally:
            # The loop leaves no worker, but a worker SIGKILLed at the stop
            # deadline may leave children (now ours) still stopping: nothing
            # of the server outlives the supervisor.  After an exception, the
            # workers too.
            self._kill_everything()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(old_wakeup)
            for fd in (status_r, self._status_w):
                os.close(fd)
            wake_r.close()
            wake_w.close()
            sock.close()
            if self.first_socket is not None:  # never forked
                self.first_socket.close()

    def _enqueue(self, signum: int, frame: object) -> None:
        self.signals.put_nowait(signum)  # no logging, no reaping here (see the module docstring)

    def _loop(self, status_r: int, wake_r: socket.socket) -> int:
        while True:
            now = time.monotonic()
            timeout = max(0.0, min(self._next_due() - now, TURN_MAX_S))
            readable, _, _ = select.select([status_r, wake_r], [], [], timeout)
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while wake_r.recv(512):
                        pass
            if status_r in readable:
                self._read_status(status_r)
            while not self.signals.empty():
                self._dispatch(self.signals.get_nowait())
            self._reap()
            if self.exit_status is not None and not self.workers:
                return self.exit_status
            if self.stopping and not self.workers:
                log.info("supervisor: every worker has stopped")
                return 0
            self._reconcile(time.monotonic())

    def _next_due(self) -> float:
        due = [time.monotonic() + TURN_MAX_S]
        for worker in self.workers.values():
            due += [t for t in (worker.stop_accept_at, worker.term_at, worker.kill_at) if t is not None]
        if not self.stopping and self._serving_count() < self.target:
            due.append(self.next_spawn_at)
        return min(due)

    # ---- signals

    def _dispatch(self, signum: int) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM):
            self.stop_signals += 1
            name = signal.Signals(signum).name
            if self.stop_signals == 1:
                log.info("supervisor: %s: stopping %d worker(s) (again: at once)", name, len(self.workers))
                self._begin_stop()
            else:
                log.info("supervisor: %s again: killing every worker and their children", name)
                self._kill_everything()
        elif signum == signal.SIGHUP:
            self._reload()
        elif signum == signal.SIGTTIN:
            if not self.stopping:
                self.target += 1
                log.info("supervisor: SIGTTIN: %d worker(s)", self.target)
        elif signum == signal.SIGTTOU:
            if self.stopping:
                pass
            elif self.target > 1:
                self.target -= 1
                log.info("supervisor: SIGTTOU: %d worker(s)", self.target)
            else:
                log.info("supervisor: SIGTTOU ignored: one worker is the fewest")

    def _begin_stop(self) -> None:
        self.stopping = True
        self.reload_generation = None
        for worker in list(self.workers.values()):
            self._retire(worker, self.config.drain_delay_s)

    def _reload(self) -> None:
        if self.stopping:
            return
        if self.reload_generation is not None:
            log.info("supervisor: SIGHUP ignored: a reload is already under way")
            return
        self.reload_generation = self.generation + 1
        self.reload_deadline = time.monotonic() + RELOAD_TIMEOUT_S
        log.info(
            "supervisor: SIGHUP: starting %d new worker(s), generation %d",
            self.target,
            self.reload_generation,
        )
        for _ in range(self.target):
            self._spawn(self.reload_generation)

    def _signal_all(self, signum: int) -> None:
        for pid in list(self.workers):
            self._kill(pid, signum)

    def _kill_everything(self) -> None:
        """SIGKILL every process below the supervisor, however deep, and reap.

        Killing only the workers is not enough: the processes model's
        per-connection children would get PR_SET_PDEATHSIG's SIGTERM and begin
        a graceful stop of their own, serving on for up to --graceful-timeout
        after the supervisor exited.  A worker may fork between the scan and
        its SIGKILL; as a subreaper we inherit that child, so the next scan
        sees it: scan until nothing lives below us."""
        deadline = time.monotonic() + KILL_ALL_S
        while True:
            below = _descendants(os.getpid())
            for pid in below:
                self._kill(pid, signal.SIGKILL)
            self._reap()
            if not below:
                break
            if time.monotonic() > deadline:
                log.warning("supervisor: %d process(es) still alive after SIGKILL: %s", len(below), below)
                break
            time.sleep(KILL_ALL_CHECK_S)
        self._signal_all(signal.SIGKILL)  # without /proc the scan saw nothing: the workers at least

    @staticmethod
    def _kill(pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # exited; reaped on this turn
            os.kill(pid, signum)

    # ---- workers: start, readiness, exit

    def _notice_s(self) -> float:
        return close_notice_s(self.config.graceful_timeout_s)

    def _spawn(self, generation: int) -> None:
        sys.stdout.flush()  # nothing buffered may be written twice
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN (RLIMIT_NPROC), ENOMEM: try again later
            log.error("supervisor: fork failed: %s", exc.strerror)
            self.backoff_s = min(max(self.backoff_s * 2, BACKOFF_FIRST_S), BACKOFF_MAX_S)
            self.next_spawn_at = time.monotonic() + self.backoff_s
            return
        if pid == 0:
            status = 1
            try:
                status = self._worker_process()
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(status)  # never return into the supervisor's loop
        self.workers[pid] = Worker(pid, generation, time.monotonic())
        if self.first_socket is not None:  # that worker's now; no other may inherit it
            self.first_socket.close()
            self.first_socket = None
        log.debug("supervisor: started worker %d (generation %d)", pid, generation)

    def _worker_process(self) -> int:
        """In the child: undo the supervisor's settings, then serve."""
        signal.set_wakeup_fd(-1)
        for signum in SUPERVISOR_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)  # the supervisor's commands, when sent to the group
        # ^C at a terminal signals the whole foreground group: the supervisor
        # alone decides, so the workers retire in order (and the processes
        # model's children, forked later, inherit the mask).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        for fd in self._fds_to_close_in_worker:
            os.close(fd)
        if self.port_holder is not None:
            self.port_holder.close()
        _die_with_parent()
        return worker_main(self.worker_config, self.listener, self._status_w, self.first_socket)

    def _read_status(self, fd: int) -> None:
        try:
            self._status_buffer += os.read(fd, 4096)
        except BlockingIOError:
            return
        *lines, self._status_buffer = self._status_buffer.split(b"\n")
        for line in lines:
            pid_text, _, what = line.decode("ascii", "replace").partition(" ")
            worker = self.workers.get(int(pid_text)) if pid_text.isdigit() else None
            if worker is not None and what == "ready":
                worker.ready = True
                log.debug("supervisor: worker %d ready", worker.pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._exited(worker, os.waitstatus_to_exitcode(status))

    def _exited(self, worker: Worker, code: int) -> None:
        now = time.monotonic()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        lived = now - worker.started
        if worker.retiring:
            log.log(
                logging.WARNING if code == -signal.SIGKILL else logging.INFO,
                "supervisor: worker %d (generation %d) %s",
                worker.pid,
                worker.generation,
                "stopped" if code == 0 else how,
            )
            return
        if self.stopping or self.exit_status is not None:
            return
        if not self.announced and code in (EXIT_CONFIG, EXIT_LISTEN):
            # At start, a worker that cannot build its server or listen: so
            # would every other.  Stop, with the status serve would give.
            log.error("supervisor: worker %d %s before it was ready: giving up", worker.pid, how)
            self.exit_status = 2 if code == EXIT_CONFIG else 1
            self._signal_all(signal.SIGKILL)
            return
        if worker.generation == self.reload_generation and not worker.ready:
            log.error(
                "supervisor: reload failed: new worker %d %s before it was ready; generation %d serves on",
                worker.pid,
                how,
                self.generation,
            )
            self._abandon_reload()
            return
        self.backoff_s = (
            0.0 if lived >= STABLE_S else min(max(self.backoff_s * 2, BACKOFF_FIRST_S), BACKOFF_MAX_S)
        )
        self.next_spawn_at = now + self.backoff_s
        log.warning(
            "supervisor: worker %d %s after %.1f s; starting another in %.1f s",
            worker.pid,
            how,
            lived,
            self.backoff_s,
        )

    def _abandon_reload(self) -> None:
        generation, self.reload_generation = self.reload_generation, None
        for worker in list(self.workers.values()):
            if worker.generation == generation:
                self._retire(worker, 0.0)

    # ---- retiring (see the module docstring)

    def _retire(self, worker: Worker, delay_s: float) -> None:
        if worker.retiring:
            return
        worker.retiring = True
        now = time.monotonic()
        graceful_s = self.config.graceful_timeout_s
        if not worker.ready:  # nothing served yet, maybe no handler yet: the plain stop
            self._kill(worker.pid, signal.SIGTERM)
            worker.kill_at = now + graceful_s
            return
        self._kill(worker.pid, NOTICE_SIGNAL)
        worker.stop_accept_at = now + delay_s
        worker.term_at = worker.stop_accept_at + self._notice_s()
        worker.kill_at = worker.stop_accept_at + graceful_s

    def _advance_retirement(self, worker: Worker, now: float) -> None:
        if worker.stop_accept_at is not None and now >= worker.stop_accept_at:
            worker.stop_accept_at = None
            self._kill(worker.pid, RETIRE_SIGNAL)
        if worker.stop_accept_at is None and worker.term_at is not None and now >= worker.term_at:
            worker.term_at = None
            self._kill(worker.pid, signal.SIGTERM)
        if worker.kill_at is not None and now >= worker.kill_at:
            worker.kill_at = None
            log.warning("supervisor: worker %d still running at the stop deadline: SIGKILL", worker.pid)
            self._kill(worker.pid, signal.SIGKILL)

    # ---- reconciling

    def _serving(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.generation == self.generation and not w.retiring]

    def _serving_count(self) -> int:
        return len(self._serving())

    def _reconcile(self, now: float) -> None:
        for worker in list(self.workers.values()):
            if worker.retiring:
                self._advance_retirement(worker, now)
        if self.stopping or self.exit_status is not None:
            return
        serving = self._serving()
        if len(serving) < self.target and now >= self.next_spawn_at:
            for _ in range(self.target - len(serving)):
                self._spawn(self.generation)
        elif len(serving) > self.target:
            for worker in sorted(serving, key=lambda w: w.started)[: len(serving) - self.target]:
                log.info("supervisor: retiring worker %d (%d wanted)", worker.pid, self.target)
                self._retire(worker, 0.0)
        if self.reload_generation is not None:
            self._advance_reload(now)
        if not self.announced and sum(w.ready for w in self._serving()) >= self.target:
            self.announced = True
            sys.stdout.write(self._ready_text + "\n")
            sys.stdout.flush()
            log.info("supervisor: %d worker(s) accepting", self.target)

    def _advance_reload(self, now: float) -> None:
        generation = self.reload_generation
        new = [w for w in self.workers.values() if w.generation == generation and not w.retiring]
        if len(new) < self.target:  # TTIN meanwhile, or a replacement: start what is missing
            for _ in range(self.target - len(new)):
                self._spawn(generation)
            return
        if all(w.ready for w in new):
            old = [w for w in self.workers.values() if w.generation != generation and not w.retiring]
            log.info(
                "supervisor: reload: generation %d accepting; retiring %d old worker(s)", generation, len(old)
            )
            self.generation, self.reload_generation = generation, None
            for i, worker in enumerate(old):
                self._retire(worker, i * RETIRE_STAGGER_S)
        elif now >= self.reload_deadline:
            log.error(
                "supervisor: reload failed: generation %d not ready within %.0f s",
                generation,
                RELOAD_TIMEOUT_S,
            )
            self._abandon_reload()


# ---- the worker process


def worker_main(
    config: ServerConfig, shared: socket.socket | None, status_fd: int, own: socket.socket | None = None
) -> int:
    """Build the model's server (fresh imports of --protocol) and serve; the exit status.
    ``shared``: the --shared-listener socket; else ``own``, this worker's
    SO_REUSEPORT socket if the supervisor made it (the first worker), or one
    made here."""
    from iomodels import serve

    try:
        server_cls, state, protocol_factory = serve.prepare(config)
    except IOModelsError as exc:
        log.error("worker: %s", exc)
        return EXIT_CONFIG
    if shared is not None:
        listener = shared
    elif own is not None:
        listener = own
    else:
        try:
            listener = make_listener(config.host, config.port, config.backlog, reuse_port=True)
        except OSError as exc:
            log.error("worker: cannot listen on %s:%d: %s", config.host, config.port, exc.strerror or exc)
            return EXIT_LISTEN

    def announce() -> None:
        os.write(status_fd, f"{os.getpid()} ready\n".encode())

    server = server_cls(config, protocol_factory, listener, announce, state)

    # The processes model serves each connection in a child with its own
    # copy of the state: it gets the notice too (the handler is inherited).
    forward = getattr(server, "signal_children", None)

    def notice(signum: int, frame: object) -> None:
        state.stopping = True  # /health: 503; HTTP responses: Connection: close
        if forward is not None:
            forward(NOTICE_SIGNAL)

    def retire(signum: int, frame: object) -> None:
        notice(signum, frame)
        server.stop_accepting(release=shared is None)

    signal.signal(NOTICE_SIGNAL, notice)
    signal.signal(RETIRE_SIGNAL, retire)
    return serve.serve(server, listener)


def _die_with_parent() -> None:
    """SIGTERM when the supervisor dies, whatever kills it (Linux prctl)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGKILL at its stop still ends us
        pass
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: orphans below us are reparented to us (Linux 3.4+)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _descendants(root: int) -> list[int]:
    """The live processes below ``root``, however deep, from /proc's parent
    pids (empty without /proc).  Zombies are left out: they run nothing, and
    those of ours are reaped by the caller."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                # After the command name, which may hold spaces and ')': state, ppid, ...
                state, ppid = f.read().rsplit(b")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if state not in (b"Z", b"X"):
            children.setdefault(int(ppid), []).append(int(name))
    found: list[int] = []
    pending = [root]
    while pending:
        below = children.get(pending.pop(), [])
        found += below
        pending += below
    return found


def _enable_migrate_req() -> None:
    """With one SO_REUSEPORT socket per worker, a retiring worker's socket
    resets the connections still queued on it, unless the kernel moves them
    to another socket of the group: net.ipv4.tcp_migrate_req=1 (Linux 5.14+,
    per network namespace).  Set it where we may, and say so; never required."""
    try:
        with open(MIGRATE_REQ) as f:
            value = f.read().strip()
    except OSError:
        log.warning(
            "supervisor: no %s (Linux < 5.14): a retiring worker resets the connections queued on "
            "its socket; --shared-listener avoids that",
            MIGRATE_REQ,
        )
        return
    if value == "1":
        log.info("supervisor: net.ipv4.tcp_migrate_req=1: a retiring worker's queued connections move on")
        return
    try:
        with open(MIGRATE_REQ, "w") as f:
            f.write("1")
    except OSError as exc:
        why = "not permitted" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else exc.strerror
        log.warning(
            "supervisor: net.ipv4.tcp_migrate_req is %s and cannot be set (%s): a rolling reload may reset "
            "connections queued on a retiring worker's socket; as root: "
            "sysctl -w net.ipv4.tcp_migrate_req=1, or use --shared-listener",
            value,
            why,
        )
        return
    log.info(
        "supervisor: set net.ipv4.tcp_migrate_req=1 (was %s) in this network namespace: connections "
        "queued on a retiring worker's socket move to another worker instead of being reset",
        value,
    )
