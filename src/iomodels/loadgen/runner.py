"""The load generator as a whole: ``--workers`` engine processes, merged.

Why processes: one Python process drives roughly one server core's worth of
  loopback echo (BENCHMARKS.md: the generator's CPU per request is about the
  epoll server's); more load needs more processes, and the GIL rules out
  threads.  Each worker owns a share of the connections (and of ``--rate``)
  and runs its own epoll loop (engine.py).
How they are merged: every phase is started by the parent on every worker at
  once (a Pipe command each) and each worker answers with its counters and
  its HDR histogram, encoded; the parent sums the counters and adds the
  histograms (exact: the buckets are the same).
Bounded: every answer has a deadline (phase length + margin), a worker that
  misses it is killed, and ``close()`` kills whatever is left, so a stuck
  server can fail a run but never hang it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from iomodels.loadgen import hist
from iomodels.loadgen.engine import ERROR_KINDS, PhaseStats, Worker, WorkerConfig
from iomodels.loadgen.http_engine import HttpWorker

ANSWER_MARGIN_S = 30.0  # a worker answers within phase length + this, or is killed


@dataclass
class LoadConfig:
    host: str
    port: int
    connections: int = 10  # active connections, all workers together
    idle: int = 0  # idle connections, all workers together
    msize: int = 1024
    protocol: str = "echo"
    rate: float = 0.0  # total requests/s; 0: closed loop
    workers: int = 1
    timeout_s: float = 2.0
    connect_timeout_s: float = 3.0
    prime: bool = False  # setup proves every active connection alive too
    # protocol "http" only: the request, and how many go out per write
    method: str = "GET"
    path: str = "/plaintext"
    pipeline: int = 1
    cpus: frozenset[int] | None = None  # pin the workers to these CPUs


def _context() -> mp.context.BaseContext:
    """Workers come from a fork server, not from a fork of this process.

    This process may run other threads when it starts workers (compare's rich
    progress bar redraws from one): a plain fork() copies the locks those
    threads hold, held, and a worker that then flushes stderr at exit waits
    forever (a worker hung that way once).  The fork server is a
    single-threaded process started once, with the engine imported; forking
    from it is as fast as fork() and inherits no one's locks.  (Python 3.14
    makes it the default on Linux for this reason.)  As with spawn, a script
    that starts a LoadGenerator needs the ``if __name__ == "__main__":`` guard:
    the fork server imports it once (preload "__main__"), so that the workers
    forked from it do not import it again each."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", "iomodels.loadgen.runner"])  # with engine, hist
    return ctx


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _stats_dict(stats: PhaseStats) -> dict[str, Any]:
    """A worker's phase, picklable and small: the latencies become an HDR blob."""
    out = asdict(stats)
    lat = out.pop("latencies_ns")
    out["histogram"] = hist.encode(hist.from_latencies_ns(lat))
    return out


def _worker_main(pipe: Connection, config: WorkerConfig, cpus: frozenset[int] | None) -> None:
    # the parent handles Ctrl-C and stops us through the pipe or a kill
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cpus:
        os.sched_setaffinity(0, cpus)
    worker = None
    try:
        worker = HttpWorker(config) if config.protocol == "http" else Worker(config)
        pipe.send(("ok", None))
        while True:
            cmd = pipe.recv()
            if cmd[0] == "setup":
                pipe.send(("ok", _stats_dict(worker.setup(cmd[1]))))
            elif cmd[0] == "run":
                pipe.send(("ok", _stats_dict(worker.run(cmd[1], cmd[2], cmd[3]))))
            else:
                break
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone
    except Exception as exc:  # report it, never leave the parent waiting
        try:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        if worker is not None:
            worker.close()


def aggregate(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the workers' counters of one phase and merge their histograms."""
    merged = hist.merge(p["histogram"] for p in parts)
    wall = max((p["wall_s"] for p in parts), default=0.0)
    # req/s over the window (see PhaseStats.active_s); setup phases have none
    window = max((p.get("active_s") or 0.0 for p in parts), default=0.0) or wall
    requests = sum(p["requests"] for p in parts)
    received = sum(p["bytes_received"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)
    errors = {k: sum(p["errors"].get(k, 0) for p in parts) for k in ERROR_KINDS}
    detail: dict[str, int] = {}
    for p in parts:
        for key, n in p["error_detail"].items():
            detail[key] = detail.get(key, 0) + n
    return {
        "requests": requests,
        "wall_s": round(wall, 4),
        "window_s": round(window, 4),
        "req_per_s": round(requests / window, 1) if window else 0.0,
        "mib_per_s": round(received / window / 2**20, 2) if window else 0.0,
        "gen_cpu_s": round(cpu, 4),
        "gen_cpu_pct": round(100.0 * cpu / wall, 1) if wall else 0.0,
        "errors": errors,
        "errors_total": sum(errors.values()),
        "error_detail": dict(sorted(detail.items(), key=lambda kv: -kv[1])),
        "connects": sum(p["connects"] for p in parts),
        "active_connected": sum(p["active_connected"] for p in parts),
        "idle_alive": sum(p["idle_alive"] for p in parts),
        "late_sends": sum(p["late_sends"] for p in parts),
        "latency": hist.summary(merged),
        "histogram": hist.encode(merged),
    }


class LoadGenerator:
    """``workers`` engine processes; use as a context manager."""

    def __init__(self, config: LoadConfig) -> None:
        if config.workers < 1:
            raise ValueError("workers must be >= 1")
        self.config = config
        self._procs: list[mp.process.BaseProcess] = []
        self._pipes: list[Connection] = []
        ctx = _context()
        active = _shares(config.connections, config.workers)
        idle = _shares(config.idle, config.workers)
        try:
            for k in range(config.workers):
                if active[k] == 0 and idle[k] == 0:
                    continue
                rate = config.rate * active[k] / config.connections if config.connections else 0.0
                wcfg = WorkerConfig(
                    host=config.host,
                    port=config.port,
                    active=active[k],
                    idle=idle[k],
                    msize=config.msize,
                    protocol=config.protocol,
                    rate=rate,
                    timeout_s=config.timeout_s,
                    connect_timeout_s=config.connect_timeout_s,
                    prime=config.prime,
                    method=config.method,
                    path=config.path,
                    pipeline=config.pipeline,
                )
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child, wcfg, config.cpus), daemon=True)
                proc.start()
                child.close()
                self._procs.append(proc)
                self._pipes.append(parent)
            for pipe in self._pipes:
                self._answer(pipe, ANSWER_MARGIN_S)
        except BaseException:
            self.close(kill=True)
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def _answer(self, pipe: Connection, timeout_s: float) -> Any:
        if not pipe.poll(timeout_s):
            raise RuntimeError(f"a load-generator worker did not answer within {timeout_s:.0f} s")
        try:
            status, value = pipe.recv()
        except EOFError:
            raise RuntimeError("a load-generator worker died") from None
        if status != "ok":
            raise RuntimeError(f"load-generator worker failed: {value}")
        return value

    def _all(self, cmd: tuple, timeout_s: float) -> dict[str, Any]:
        for pipe in self._pipes:
            pipe.send(cmd)
        return aggregate([self._answer(pipe, timeout_s) for pipe in self._pipes])

    def setup(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Connect; prove every idle connection alive by one round trip."""
        return self._all(("setup", timeout_s), timeout_s + ANSWER_MARGIN_S)

    def run(self, duration_s: float, record: bool = True, drain_s: float = 2.0) -> dict[str, Any]:
        """One phase of load on every worker at once (warm-up: ``record=False``)."""
        return self._all(("run", duration_s, record, drain_s), duration_s + drain_s + ANSWER_MARGIN_S)

    def close(self, kill: bool = False) -> None:
        """Stop the workers: politely between phases, at once with ``kill``
        (after an error or Ctrl-C a worker may be mid-phase, deaf to the pipe)."""
        for pipe in self._pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for proc in self._procs:
            if kill and proc.is_alive():
                proc.kill()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for pipe in self._pipes:
            pipe.close()
        self._procs.clear()
        self._pipes.clear()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(kill=exc_type is not None)
