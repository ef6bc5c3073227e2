"""processes: blocking IO, one forked process per connection.

Waiting for data: each connection's child process blocks in its own recv();
  the parent blocks in accept(), forks, closes its copy of the socket and
  accepts again.  The classic Unix server (inetd, pre-threads Apache).
Copying it: inside that recv(), in the child.
What to watch when measuring: fork() per connection (page tables copied,
  memory shared copy-on-write until written: CPython's reference counts
  write to most object pages, so RSS per child grows quickly), context
  switches between processes, and the descriptor/process limits.  Measure the
  whole process group, not just the parent.
Facts that shaped this code:
  - The parent is single-threaded, so fork() is safe (no lock held by a
    thread that does not exist in the child).
  - Children stay in the server's process group (a terminal's Ctrl-C reaches
    them too) and ask the kernel for SIGTERM if the parent dies
    (prctl PR_SET_PDEATHSIG), so none outlives the server.
  - Stopping: the parent stops accepting and sends SIGTERM to each child; a
    child then flushes and exits like a blocking server; the parent waits
    until its flush deadline (the stop budget less the exit's reserve), then
    SIGKILLs what is left and reaps it.  In a child,
    any number of stop signals means "stop gracefully" (Ctrl-C and the
    parent's SIGTERM may both arrive); only the parent escalates.
  - SIGCHLD reaps finished children (waitpid WNOHANG in a loop: signals merge);
    it is blocked from fork() until the pid is recorded, so a child that exits
    at once is never reaped before the parent knows it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import time
from typing import Any

from iomodels.core.server import ACCEPT_RETRY_DELAY_S
from iomodels.models._blocking import BlockingServer

log = logging.getLogger("iomodels")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
REAP_CHECK_S = 0.05
_SIGCHLD = {signal.SIGCHLD}


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the process group still ends us
        pass


class Server(BlockingServer):
    name = "processes"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not hasattr(os, "fork"):
            return False, "os.fork does not exist on this platform"
        return True, ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._children: set[int] = set()
        self._is_child = False

    # ---- children

    def _reap(self, signum: int = 0, frame: Any = None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # no child at all
                self._children.clear()
                return
            if pid == 0:
                return
            self._children.discard(pid)
            if os.WIFSIGNALED(status):
                log.debug("child %d killed by %s", pid, signal.Signals(os.WTERMSIG(status)).name)
            elif os.WEXITSTATUS(status):
                log.debug("child %d exited with status %d", pid, os.WEXITSTATUS(status))

    def _fork(self, sock: socket.socket, peername: Any) -> None:
        # SIGCHLD is blocked from fork() until the pid is recorded: a child
        # that exits at once must not be reaped before it is in _children,
        # or it would stay there, counted, forever.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGCHLD)
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN (RLIMIT_NPROC), ENOMEM
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGCHLD)
            log.warning("fork failed for %s: %s; closing it", peername, exc.strerror)
            sock.close()
            time.sleep(ACCEPT_RETRY_DELAY_S / 10)
            return
        if pid == 0:
            self._child(sock, peername)  # never returns
        self._children.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGCHLD)
        sock.close()  # the child has its own copy

    def _child(self, sock: socket.socket, peername: Any) -> None:
        status = 0
        try:
            self._is_child = True
            self._children.clear()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGCHLD)  # blocked by _fork
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._child_stop)
            _die_with_parent()
            self.listener.close()
            self.serve_connection(sock, peername)
        except BaseException:
            log.exception("child serving %s failed", peername)
            status = 1
        finally:
            os._exit(status)  # never return into the parent's accept loop

    def _child_stop(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            self.request_stop()

    # ---- stopping (parent)

    def request_stop(self) -> None:
        if self._is_child:
            return super().request_stop()
        self.note_stop_signal()
        self._stopping = True
        self.wake_accepts()
        self._signal_children(signal.SIGTERM)

    def stop_now(self) -> None:
        if self._is_child:
            return super().stop_now()
        self.request_stop()
        self._signal_children(signal.SIGKILL)

    def signal_children(self, signum: int) -> None:
        """Forward ``signum`` to every child (a supervisor's notice, supervisor.py)."""
        if not self._is_child:
            self._signal_children(signum)

    def _signal_children(self, signum: int) -> None:
        for pid in list(self._children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                self._children.discard(pid)

    def run(self) -> None:
        previous = signal.signal(signal.SIGCHLD, self._reap)
        try:
            self.accept_loop(self._fork, count_active=lambda: len(self._children))
            # The children flush on their own clock (the SIGTERM we sent them
            # started it); ours started first, so whatever still runs at our
            # flush deadline is killed, and reaping fits in what is left.
            deadline = self.flush_deadline
            while self._children and time.monotonic() < deadline:
                time.sleep(min(REAP_CHECK_S, max(0.0, deadline - time.monotonic())))  # SIGCHLD cuts it short
                self._reap()
            if self._children:
                log.info("killing %d child(ren) still running", len(self._children))
                self._signal_children(signal.SIGKILL)
                for pid in list(self._children):
                    try:
                        os.waitpid(pid, 0)
                    except ChildProcessError:
                        pass
                    self._children.discard(pid)
        finally:
            signal.signal(signal.SIGCHLD, previous)

    def statistics(self) -> dict[str, int | float]:
        return {"children": len(self._children)}
