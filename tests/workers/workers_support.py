"""What the --workers tests share: find the workers of a supervisor, count the
connections each holds, wait for a state, run wrk."""

from __future__ import annotations

import collections
import re
import subprocess
import time
from collections.abc import Callable, Iterable

from iomodels.harness import ServerProcess as Server
from iomodels.harness import session_group


def worker_pids(server: Server) -> list[int]:
    """The supervisor's children: its workers (the processes model's
    per-connection children are their grandchildren)."""
    return sorted(pid for pid, fields in session_group(server.pgid) if int(fields[1]) == server.pid)


def wait_for(what: str, check: Callable[[], object], timeout: float = 10.0, server: Server | None = None):
    """Poll ``check`` until it returns something true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            log = f"\nserver log (tail):\n{server.log_text()[-3000:]}" if server is not None else ""
            raise AssertionError(f"not within {timeout:g} s: {what}{log}")
        time.sleep(0.05)


def wait_workers(server: Server, count: int, exclude: Iterable[int] = (), timeout: float = 10.0) -> list[int]:
    """Wait until the supervisor has ``count`` workers, none of them in ``exclude``."""
    excluded = set(exclude)

    def check() -> list[int] | None:
        pids = worker_pids(server)
        return pids if len(pids) == count and not excluded & set(pids) else None

    return wait_for(f"{count} workers, none of {sorted(excluded)}", check, timeout, server)


def connections_per_worker(server: Server) -> dict[int, int]:
    """Established connections on the server's port held by each worker (or
    by a process it forked), from ss (netlink sock_diag, filtered by port in
    the kernel: reading /proc/net/tcp whole while other tests churn
    connections skips and repeats entries)."""
    workers = set(worker_pids(server))
    parent = {pid: int(fields[1]) for pid, fields in session_group(server.pgid)}
    done = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{server.port} )"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    counts: collections.Counter[int] = collections.Counter({pid: 0 for pid in workers})
    for line in done.stdout.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        owner = next((p if p in workers else parent.get(p) for p in owners), None)
        if owner in workers:
            counts[owner] += 1
    return dict(counts)
