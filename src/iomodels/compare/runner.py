"""The runner of ``iomodels compare``: every model, the same load, side by side.

For each repeat, for each model (order rotated per repeat, so drift on a
shared machine hits every model alike): start ``iomodels serve --model M
--protocol echo --port 0`` in a session of its own, pinned to one CPU; run an
unmeasured warm-up; then every cell of the grid (and of ``--idle-sweep``) on
that server; stop it (SIGTERM, then SIGKILL of its process group).

One cell: a fresh LoadGenerator (workers pinned to the other CPUs) connects
and proves every connection alive by one round trip (threads and forked
children appear on connect: ``processes`` needs seconds to fork 1000, which
belongs to connection setup, not to the window; models with a fixed
concurrency limit below the connection count are not primed, their backlog
is the measurement), runs a short unmeasured settle phase, drains, then one
measured window.  Around the window it reads:

  server CPU      run time of every thread of every process of the server's
                  session (schedstat, exact) plus the CPU of reaped children,
                  so fork-per-connection and thread-per-connection count
  noise           busy CPU time of the whole machine (/proc/stat) minus the
                  server, the generator workers and this process: other
                  tenants.  Tick-sampled (CONFIG_HZ), so only indicative; a
                  cell above ``noise_threshold`` % of one CPU is measured
                  again once and marked noisy if it stays so
  after it        RSS and PSS of the whole process group (PSS divides shared
                  pages among forks, so the sum is honest for ``processes``),
                  threads and open descriptors, while the connections are
                  still open

Cells a model cannot do are skipped with the reason, never measured with a
made-up number: see ``skip_reason``.  A cell that runs but cannot complete
(``blocking`` with 100 connections: 99 of them wait in the backlog) is
measured: its req/s is what the served connections did, its timeouts say
how many requests never got an answer, both bounded by the drain deadline.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iomodels import models
from iomodels.harness import ServerProcess, busy_ticks, versions
from iomodels.loadgen.runner import LoadConfig, LoadGenerator

HOST = "127.0.0.1"  # loopback only
SELECT_MAX_FDS = 1000  # FD_SETSIZE 1024 minus the listener, stdio, epoll of the server...
THREADPOOL_THREADS = 8  # `iomodels serve` default --threads
SCHEMA = 1


@dataclass
class Settings:
    models: list[str]
    connections: list[int] = field(default_factory=lambda: [1, 10, 100, 1000])
    msize: int = 1024
    duration_s: float = 3.0
    warmup_s: float = 2.0  # per server, unmeasured
    settle_s: float = 0.5  # per cell, unmeasured
    drain_s: float = 1.0
    timeout_s: float = 2.0
    repeats: int = 1
    idle_sweep: list[int] = field(default_factory=list)
    idle_active: int = 10
    workers: int = 1
    server_workers: int = 0  # serve --workers N (docs/workers.md); 0: one process
    server_cpu: int | None = 0
    gen_cpus: list[int] | None = None
    noise_threshold: float = 30.0  # % of one CPU used by others during a window
    max_threads: int = 16000  # threads model: one thread per connection, capped
    max_processes: int = 2000  # processes model: one fork per connection, capped
    budget_s: float | None = None  # --quick: skip re-runs that would overrun this
    quick: bool = False


# ----------------------------------------------------------------------
# what a model cannot do


def concurrency_limit(model: str) -> int | None:
    """How many connections the model serves at once (None: as many as it can)."""
    return {"blocking": 1, "threadpool": THREADPOOL_THREADS}.get(model)


def skip_reason(model: str, active: int, idle: int, settings: Settings) -> str | None:
    """Why a cell is not run on this model, or None.  Only idle cells are skipped:
    an over-subscribed active cell is measured (its timeouts are the result)."""
    total = active + idle
    if idle and model == "blocking":
        return (
            "serves one connection at a time: an idle connection would hold it, the active ones wait forever"
        )
    limit = concurrency_limit(model)
    if idle and limit is not None and idle >= limit:
        return (
            f"{limit} worker threads: {idle} idle connections would occupy them all and the "
            "active ones would wait in the backlog"
        )
    if model == "select" and total > SELECT_MAX_FDS:
        return f"select() cannot watch descriptors >= FD_SETSIZE (1024): {total} connections do not fit"
    if model == "threads" and total > settings.max_threads:
        return f"one thread per connection: {total} threads exceed this run's cap of {settings.max_threads}"
    if model == "processes" and total > settings.max_processes:
        return (
            f"one forked process per connection: {total} processes exceed this run's cap of "
            f"{settings.max_processes} (shared machine)"
        )
    return None


# ----------------------------------------------------------------------
# cells


def _note(cell: dict[str, Any]) -> str:
    """One line on what went wrong in a measured cell, from its counters."""
    notes = []
    if cell.get("errors_total"):
        notes.append(", ".join(f"{n} {k}" for k, n in cell["errors"].items() if n))
    limit = concurrency_limit(cell["model"])
    if limit is not None and cell["connections"] + cell["idle"] > limit:
        notes.append(f"serves {limit} at a time, rest wait in backlog")
    if cell["model"] == "nonblocking":
        notes.append("busy-polls a CPU by design")
    if cell.get("idle") and cell.get("idle_alive", 0) < cell["idle"]:
        notes.append(f"only {cell.get('idle_alive', 0)}/{cell['idle']} idle alive")
    if cell.get("noisy"):
        notes.append("NOISY (others used the CPU)")
    return "; ".join(notes)


def measure_cell(server: ServerProcess, settings: Settings, active: int, idle: int) -> dict[str, Any]:
    """One measured window on a running server (a fresh generator each time)."""
    config = LoadConfig(
        host=HOST,
        port=server.port,
        connections=active,
        idle=idle,
        msize=settings.msize,
        protocol="echo",
        workers=max(1, min(settings.workers, active + idle)),
        timeout_s=settings.timeout_s,
        cpus=frozenset(settings.gen_cpus) if settings.gen_cpus else None,
        # every connection answered once before the clock starts (a forking server
        # forks on accept, not on the first request), except where the model
        # cannot serve them all at once: then the backlog is what we measure
        prime=(concurrency_limit(server.model) or active + idle) >= active + idle,
    )
    hz = os.sysconf("SC_CLK_TCK")
    with LoadGenerator(config) as gen:
        setup = gen.setup(timeout_s=max(10.0, (active + idle) / 500))
        if settings.settle_s > 0:
            gen.run(settings.settle_s, record=False, drain_s=settings.drain_s)
        me0 = time.process_time()
        srv0 = server.cpu_seconds()
        ticks0 = busy_ticks()
        w0 = time.perf_counter()
        result = gen.run(settings.duration_s, record=True, drain_s=settings.drain_s)
        w1 = time.perf_counter()
        ticks1 = busy_ticks()
        srv1 = server.cpu_seconds()
        me1 = time.process_time()
        res = server.resources()  # connections still open
    wall = w1 - w0
    srv = srv1 - srv0
    ours = srv + result["gen_cpu_s"] + (me1 - me0)
    noise = 100.0 * ((ticks1 - ticks0) / hz - ours) / wall if wall else 0.0
    req = result["requests"]
    cell: dict[str, Any] = {
        "status": "ok",
        "req_per_s": result["req_per_s"],
        "mib_per_s": result["mib_per_s"],
        "requests": req,
        "window_s": round(wall, 3),
        "latency": result["latency"],
        "histogram": result["histogram"],
        "errors": result["errors"],
        "errors_total": result["errors_total"],
        "error_detail": result["error_detail"],
        "srv_cpu_pct": round(100.0 * srv / wall, 1) if wall else None,
        "srv_us_per_req": round(1e6 * srv / req, 2) if req else None,
        "gen_cpu_pct": result["gen_cpu_pct"],
        "noise_cpu_pct": round(max(0.0, noise), 1),
        "idle_alive": setup["idle_alive"],
        "setup_s": setup["wall_s"],
        "setup_errors": setup["errors"],
        **res,
    }
    return cell


@dataclass
class Runner:
    settings: Settings
    out_dir: Path
    progress: Callable[[str], None] = lambda desc: None  # called before each step
    advance: Callable[[], None] = lambda: None  # called after each step
    cells: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    reruns: int = 0

    def plan(self) -> list[tuple[str, int, int]]:
        """The (kind, active, idle) cells every model runs, in order."""
        grid = [("grid", c, 0) for c in self.settings.connections]
        idle = [("idle", self.settings.idle_active, n) for n in self.settings.idle_sweep]
        return grid + idle

    def steps(self) -> int:
        """Progress steps: per repeat and model, one warm-up plus one per cell."""
        return self.settings.repeats * len(self.settings.models) * (1 + len(self.plan()))

    def _may_rerun(self, cell_s: float) -> bool:
        if self.settings.budget_s is None:
            return True
        done = sum(1 for _ in self.cells)
        total = self.settings.repeats * len(self.settings.models) * len(self.plan())
        elapsed = time.monotonic() - self.started
        mean = elapsed / max(1, done)
        return elapsed + (total - done) * mean + cell_s < self.settings.budget_s

    def run(self) -> list[dict[str, Any]]:
        models_ = self.settings.models
        for rep in range(self.settings.repeats):
            k = rep % len(models_)
            for model in models_[k:] + models_[:k]:  # rotate: no model always goes first
                self._run_model(model, rep)
        return self.cells

    def _base(self, model: str, rep: int, kind: str, active: int, idle: int) -> dict[str, Any]:
        return {
            "model": model,
            "repeat": rep,
            "kind": kind,
            "connections": active,
            "idle": idle,
            "msize": self.settings.msize,
        }

    def _run_model(self, model: str, rep: int) -> None:
        plan = self.plan()
        self.progress(f"{model}: start + warm-up")
        ok, reason = models.available(model)
        server = None
        warmed = False
        try:
            if not ok:
                raise _Skip(f"not available here: {reason}")
            log = self.out_dir / "logs" / f"{model}-{rep}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            n = self.settings.server_workers
            server = ServerProcess(
                model,
                host=HOST,
                cpu=self.settings.server_cpu,
                log_path=log,
                args=["--workers", str(n)] if n else [],
            ).start()
            self._warm_up(server, model)
            warmed = True
            self.advance()
            for kind, active, idle in plan:
                self.progress(f"{model}: {active} conn" + (f" + {idle} idle" if idle else ""))
                self.cells.append(self._run_cell(server, model, rep, kind, active, idle))
                self.advance()
        except _Skip as skip:
            self._fill(model, rep, plan, "skipped", str(skip), warmed)
        except Exception as exc:  # one broken model must not stop the others
            self._fill(model, rep, plan, "error", f"{type(exc).__name__}: {exc}", warmed)
        finally:
            if server is not None:
                server.stop()

    def _fill(
        self, model: str, rep: int, plan: list[tuple[str, int, int]], status: str, why: str, warmed: bool
    ) -> None:
        """Record every cell of the model not measured yet with the reason."""
        have_rep = {
            (c["kind"], c["connections"], c["idle"])
            for c in self.cells
            if c["model"] == model and c["repeat"] == rep
        }
        for kind, active, idle in plan:
            if (kind, active, idle) not in have_rep:
                self.cells.append(
                    {**self._base(model, rep, kind, active, idle), "status": status, "reason": why}
                )
                self.advance()
        if not warmed:
            self.advance()  # the warm-up step

    def _warm_up(self, server: ServerProcess, model: str) -> None:
        if self.settings.warmup_s <= 0:
            return
        active = min(10, concurrency_limit(model) or 10)
        config = LoadConfig(
            host=HOST,
            port=server.port,
            connections=active,
            msize=self.settings.msize,
            timeout_s=self.settings.timeout_s,
            cpus=frozenset(self.settings.gen_cpus) if self.settings.gen_cpus else None,
            prime=True,
        )
        with LoadGenerator(config) as gen:
            gen.setup(10.0)
            gen.run(self.settings.warmup_s, record=False, drain_s=self.settings.drain_s)

    def _run_cell(
        self, server: ServerProcess, model: str, rep: int, kind: str, active: int, idle: int
    ) -> dict:
        base = self._base(model, rep, kind, active, idle)
        why = skip_reason(model, active, idle, self.settings)
        if why:
            return {**base, "status": "skipped", "reason": why}
        if not server.alive():
            return {**base, "status": "error", "reason": "the server died (see its log)"}
        t0 = time.monotonic()
        try:
            cell = {**base, **measure_cell(server, self.settings, active, idle)}
        except Exception as exc:
            return {**base, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        cell["reruns"] = 0
        if cell["noise_cpu_pct"] > self.settings.noise_threshold:
            if self._may_rerun(time.monotonic() - t0):
                self.reruns += 1
                try:
                    again = {**base, **measure_cell(server, self.settings, active, idle)}
                except Exception:
                    again = None
                if again is not None:
                    again["reruns"] = 1
                    again["first_noise_cpu_pct"] = cell["noise_cpu_pct"]
                    cell = again
                cell["noisy"] = cell["noise_cpu_pct"] > self.settings.noise_threshold
            else:
                cell["noisy"] = True
                cell["rerun_skipped"] = "no time left in the --quick budget"
        else:
            cell["noisy"] = False
        cell["note"] = _note(cell)
        return cell


class _Skip(Exception):
    """A whole model cannot run here."""


# ----------------------------------------------------------------------
# summary over repeats


def summarize(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, kind, connections, idle): medians over the measured repeats."""
    from iomodels.loadgen import hist

    keys: dict[tuple, list[dict[str, Any]]] = {}
    for c in cells:
        keys.setdefault((c["model"], c["kind"], c["connections"], c["idle"]), []).append(c)
    rows = []
    for (model, kind, active, idle), group in keys.items():
        ok = [c for c in group if c["status"] == "ok"]
        row: dict[str, Any] = {"model": model, "kind": kind, "connections": active, "idle": idle}
        if not ok:
            row["status"] = group[0]["status"]
            row["reason"] = group[0].get("reason", "")
            rows.append(row)
            continue
        row["status"] = "ok"
        row["repeats"] = len(ok)

        def med(key: str, group: list[dict[str, Any]] = ok) -> float | None:
            vals = [c[key] for c in group if c.get(key) is not None]
            return round(statistics.median(vals), 2) if vals else None

        for key in (
            "req_per_s",
            "mib_per_s",
            "srv_us_per_req",
            "srv_cpu_pct",
            "gen_cpu_pct",
            "noise_cpu_pct",
            "srv_rss_mib",
            "srv_pss_mib",
            "srv_threads",
            "srv_fds",
            "srv_procs",
            "idle_alive",
        ):
            row[key] = med(key)
        # latency: the repeats' histograms added (exact), not a median of percentiles
        row["latency"] = hist.summary(hist.merge(c["histogram"] for c in ok))
        row["errors"] = {k: sum(c["errors"][k] for c in ok) for k in ok[0]["errors"]}
        row["errors_total"] = sum(row["errors"].values())
        row["noisy"] = any(c.get("noisy") for c in ok)
        notes = []
        for c in ok:
            if c.get("note") and c["note"] not in notes:
                notes.append(c["note"])
        row["note"] = " | ".join(notes)
        rows.append(row)
    return rows


def results_document(
    settings: Settings, cells: list[dict[str, Any]], command: str, elapsed_s: float, info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "elapsed_s": round(elapsed_s, 1),
        "machine": info,
        "versions": versions(),
        "settings": asdict(settings),
        "cells": cells,
        "summary": summarize(cells),
    }
