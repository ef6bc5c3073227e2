"""One ``iomodels serve`` (or any server command) as a child process under test.

What compare, claims, tour, bench/ and the tests all need from a server they
start, written once:

  start     a session of its own (start_new_session: session id == process
            group id == its pid), so that every thread and child it makes can
            be found in /proc and killed at once; pinned to one CPU by pinning
            the *forking thread* around Popen (the child inherits that mask,
            and so does every thread and child it will ever make: no race
            against the ones it starts at once); stdout read until the ready
            line, which core.server.parse_ready_line parses
  measure   the exact CPU time of the whole session (schedstat), its memory,
            threads and descriptors
  stop      a signal, a bounded wait, then SIGKILL to the group and to any
            process of the session that left it, until none is left

A server that exits or stays silent at start raises ServerStartError naming
the server and its log, with the log's last lines.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from signal import SIGKILL, SIGTERM  # bare names: the class has a method called signal
from types import TracebackType
from typing import IO, Any

import iomodels
from iomodels.core.server import ReadyLine, parse_ready_line

SRC_DIR = Path(iomodels.__file__).resolve().parent.parent  # the code the server runs
GONE_TIMEOUT_S = 5.0  # after SIGKILL: how long the session's processes may take to vanish
LOG_TAIL_LINES = 8  # lines of the server's log quoted in a start error


MP_HELPERS = (b"multiprocessing.forkserver", b"multiprocessing.resource_tracker")


class ServerStartError(RuntimeError):
    """The server exited, stayed silent or printed something else before its ready line.

    @ivar what: that, in a few words
    @ivar log_tail: the last lines of the server's stderr
    """

    def __init__(self, message: str, what: str = "", log_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.what = what or message
        self.log_tail = list(log_tail)


def live_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, /proc/PID/stat fields after the command name) of every live process,
    in one pass over /proc.  Zombies are left out: they run nothing and hold
    nothing, and a container's init may never reap them."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # fields[0] is the state; [1] ppid, [2] pgrp, [3] session
        if fields[0] not in ("Z", "X"):
            yield int(name), fields


def session_group(sid: int) -> list[tuple[int, list[str]]]:
    """Every live process of session ``sid`` (see live_processes): the server and
    every child it forked, however deep, even one that left its process group."""
    return [(pid, fields) for pid, fields in live_processes() if int(fields[3]) == sid]


def session_cpu_s(sid: int) -> float:
    """CPU seconds of session ``sid``: its processes, their threads (live or ended) and
    their reaped children.

    Live threads: the scheduler's exact runtime (/proc/PID/task/TID/schedstat,
    ns).  Not utime+stime of /proc/PID/stat: those are tick samples, and on
    a machine whose CPUs are busy elsewhere a busy server can be charged
    with a fraction of what it used.  Threads that have ended (a thread per
    connection, gone when wrk closes its connections) and reaped children
    (fork per connection) only exist as ticks: the process's utime+stime
    less its live threads' ticks, and its cutime+cstime.
    """
    hz = os.sysconf("SC_CLK_TCK")
    runtime_ns = 0
    ticks = 0
    for pid, fields in session_group(sid):
        ticks += int(fields[13]) + int(fields[14])  # cutime cstime: reaped children
        process_ticks = int(fields[11]) + int(fields[12])  # every thread's, ended ones included
        live_ticks = 0
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    runtime_ns += int(f.read().split()[0])
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    task = f.read().rsplit(")", 1)[1].split()
                live_ticks += int(task[11]) + int(task[12])
            except (OSError, ValueError, IndexError):
                if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                    continue  # the thread ended meanwhile
                ticks += process_ticks  # no schedstat: ticks it is, for the whole process
                live_ticks = process_ticks
                break
        ticks += max(0, process_ticks - live_ticks)  # threads that have ended
    return runtime_ns / 1e9 + ticks / hz


def live_descendants() -> list[int]:
    """Live processes this one started, however deep (tests prove cleanup with it),
    except multiprocessing's fork server (loadgen/runner.py) and its resource
    tracker: started once, they live as long as this process and run nothing of ours."""
    children: dict[int, list[int]] = {}
    for pid, fields in live_processes():
        children.setdefault(int(fields[1]), []).append(pid)
    out = []
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue  # gone meanwhile
        if not any(helper in cmdline for helper in MP_HELPERS):
            out.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(out)


def serve_command(
    model: str, protocol: str, host: str, port: int, log_level: str | None, args: Sequence[str]
) -> list[str]:
    """The argv of ``python -m iomodels serve`` for these settings; ``args`` last (argparse: last wins)."""
    cmd = [sys.executable, "-m", "iomodels", "serve", "--model", model, "--protocol", protocol]
    cmd += ["--host", host, "--port", str(port)]
    if log_level is not None:
        cmd += ["--log-level", log_level]
    return cmd + list(args)


class ServerProcess:
    """A server in a session of its own: started, pinned, measured, stopped.

    ``ServerProcess("epoll").start()`` runs ``python -m iomodels serve --model
    epoll --protocol echo --host 127.0.0.1 --port 0 --log-level warning``;
    ``command=`` replaces the whole argv (another CLI, a server that is not
    ours: it must still print a ready line).  As a context manager it starts
    and stops.  ``env`` is added to this process's environment; PYTHONPATH
    starts with the source tree this module comes from, so the server runs
    the same code as its caller.

    ``pass_fds`` are inherited.  ``nofile`` (n or (soft, hard)) and ``rlimits``
    ({resource.RLIMIT_*: (soft, hard)}) start it with those limits, and
    ``preexec`` runs in the child before exec: both go through Popen's
    preexec_fn, Python code between fork and exec, which may deadlock if this
    process runs other threads; tests use them (the EMFILE and sigio-overflow
    tests), compare and claims do not.

    @ivar ready: the parsed ready line (host, port, model, protocol)
    @ivar proc: the Popen; ``pid`` == ``pgid`` == the session id
    """

    def __init__(
        self,
        model: str | None = None,
        protocol: str = "echo",
        args: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cpu: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        ready_timeout_s: float = 20.0,
        log_level: str | None = "warning",
        pass_fds: Sequence[int] = (),
        nofile: int | tuple[int, int] | None = None,
        rlimits: Mapping[int, tuple[int, int]] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        if command is None and model is None:
            raise ValueError("ServerProcess needs a model or a command")
        self.model = model
        self.command = (
            list(command)
            if command is not None
            else serve_command(model or "", protocol, host, port, log_level, args)
        )
        self.name = model or shlex.join(self.command)  # for error messages
        self.cpu = cpu
        self.log_path = Path(log_path) if log_path is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.pass_fds = tuple(pass_fds)
        self.rlimits = dict(rlimits or {})
        if nofile is not None:
            self.rlimits[resource.RLIMIT_NOFILE] = (nofile, nofile) if isinstance(nofile, int) else nofile
        self.preexec = preexec
        self.stdout_after_ready = b""  # what came after the ready line in the same read (should be nothing)
        self._env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: ReadyLine | None = None
        self._log: IO[bytes] | None = None
        self._final_log = ""  # a temp log's text, kept once the file is closed
        self._stopped = False

    # ------------------------------------------------------------------
    # start

    def start(self) -> ServerProcess:
        if self.proc is not None:
            raise RuntimeError(f"{self.name}: already started")
        env = dict(os.environ)
        env.update(self._env)
        env["PYTHONPATH"] = str(SRC_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "w+b")  # noqa: SIM115 - closed in stop()
        else:
            self._log = tempfile.TemporaryFile(prefix="iomodels-server-", suffix=".log")  # noqa: SIM115
        old_mask = None
        if self.cpu is not None:
            old_mask = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {self.cpu})
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env=env,
                start_new_session=True,
                pass_fds=self.pass_fds,
                preexec_fn=self._before_exec if self.rlimits or self.preexec else None,
            )
        except BaseException:
            self._log.close()
            raise
        finally:
            if old_mask is not None:
                os.sched_setaffinity(0, old_mask)
        try:
            self.ready = self._read_ready_line()
        except BaseException:
            self.stop(SIGKILL, 0.0)
            raise
        if self.model is None:
            self.model = self.ready.model
        return self

    def _before_exec(self) -> None:
        for which, limits in self.rlimits.items():
            resource.setrlimit(which, limits)
        if self.preexec is not None:
            self.preexec()

    def _read_ready_line(self) -> ReadyLine:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        line = b""
        end = time.monotonic() + self.ready_timeout_s
        while b"\n" not in line:
            left = end - time.monotonic()
            if left <= 0:
                raise self._start_error(f"no ready line within {self.ready_timeout_s:g} s")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                status = self.proc.wait(5)
                raise self._start_error(f"exited with status {status} before its ready line")
            line += chunk
        first, self.stdout_after_ready = line.split(b"\n", 1)
        text = first.decode("utf-8", "replace")
        try:
            return parse_ready_line(text)
        except ValueError as exc:
            raise self._start_error(str(exc)) from None

    def _start_error(self, what: str) -> ServerStartError:
        where = f"log {self.log_path}" if self.log_path else "its stderr"
        tail = self.log_text().splitlines()[-LOG_TAIL_LINES:]
        quoted = "".join(f"\n  | {line}" for line in tail) or "\n  | (empty)"
        command = f" ({shlex.join(self.command)})" if self.model else ""  # else self.name is the command
        return ServerStartError(f"server {self.name}: {what}{command}; {where}:{quoted}", what, tail)

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------
    # what it is

    def _started(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError(f"{self.name}: not started")
        return self.proc

    @property
    def pid(self) -> int:
        return self._started().pid

    pgid = pid  # start_new_session: the server leads its own process group and session

    def _ready(self) -> ReadyLine:
        if self.ready is None:
            raise RuntimeError(f"{self.name}: not started")
        return self.ready

    @property
    def host(self) -> str:
        return self._ready().host

    @property
    def port(self) -> int:
        return self._ready().port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def returncode(self) -> int | None:
        return self._started().poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """What the server wrote on stderr so far (all of it, after stop())."""
        if self._log is None or self._log.closed:
            return self._final_log
        with contextlib.suppress(OSError):
            return os.pread(self._log.fileno(), 1 << 24, 0).decode("utf-8", "replace")
        return ""

    # ------------------------------------------------------------------
    # measuring

    def group_pids(self) -> list[int]:
        """Every live process of the server's session: the server and its children."""
        return [pid for pid, _ in session_group(self.pgid)]

    def cpu_seconds(self) -> float:
        """Exact CPU seconds of the server, its threads and its children (:func:`session_cpu_s`)."""
        return session_cpu_s(self.pgid)

    def fds(self) -> list[int]:
        """The server process's open descriptors (its children's not included)."""
        with contextlib.suppress(OSError):
            return sorted(int(x) for x in os.listdir(f"/proc/{self.pid}/fd"))
        return []

    def resources(self) -> dict[str, Any]:
        """RSS and PSS (MiB), threads, fds and processes of the whole session, now.

        PSS divides shared pages among forks, so its sum is honest for a
        forking server where RSS counts the shared pages once per process."""
        page = os.sysconf("SC_PAGE_SIZE")
        rss = pss = threads = fds = 0
        group = session_group(self.pgid)
        have_pss = True
        for pid, fields in group:
            threads += int(fields[17])
            rss += int(fields[21]) * page
            with contextlib.suppress(OSError):
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            try:  # smaps_rollup: PSS in one read, cheaper than a full smaps walk
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1]) * 1024
                            break
            except OSError:
                have_pss = False
        return {
            "srv_rss_mib": round(rss / 2**20, 1),
            "srv_pss_mib": round(pss / 2**20, 1) if have_pss else None,
            "srv_threads": threads,
            "srv_fds": fds,
            "srv_procs": len(group),
        }

    # ------------------------------------------------------------------
    # stopping

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server process (not its children); a no-op once it has exited."""
        proc = self._started()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int | None:
        """The exit status, or None if the server still runs after ``timeout_s``."""
        try:
            return self._started().wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Send ``sig``, wait up to ``timeout_s`` for the server to exit, then
        SIGKILL whatever is left of its session and wait until none of it runs.
        Returns the exit status (negative: killed by that signal).  Idempotent;
        None if it was never started."""
        if self.proc is None:
            return None
        proc = self.proc
        if self._stopped:
            return proc.returncode
        try:
            if proc.poll() is None and sig != SIGKILL:
                self.signal(sig)
                self.wait(timeout_s)
            self._kill_session()
        finally:
            self._stopped = True
            if proc.stdout is not None:
                proc.stdout.close()
            if self._log is not None and not self._log.closed:
                self._final_log = self.log_text()
                self._log.close()
        return proc.returncode

    def _kill_session(self) -> None:
        """SIGKILL the process group, then any process of the session outside it
        (a child that called setsid/setpgid), reap the server, and wait until
        the session has no live process left."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, SIGKILL)
        end = time.monotonic() + GONE_TIMEOUT_S
        while True:
            if self.proc.returncode is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(0.05)
            else:
                time.sleep(0.01)  # orphans: their new parent reaps them
            left = [pid for pid, _ in session_group(self.pgid)]
            if not left and self.proc.returncode is not None:
                return
            if time.monotonic() > end:
                raise RuntimeError(f"server {self.name}: processes {left} still alive after SIGKILL")
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, SIGKILL)
