"""The runner of ``iomodels compare --protocol http``: models and peers under wrk.

For each repeat, for each target (the order rotated per repeat, so that drift
on a shared machine hits every target alike): start the server pinned to one
CPU (a model as ``iomodels serve --protocol http``, a peer by its own command
line), wait until it answers, warm it up unmeasured, then for each connection
count run wrk, pinned to the other CPUs, on ``--path`` (default /plaintext,
keep-alive, ``--pipeline`` requests per write) and read around it:

  server CPU   run time of every thread of every process of the server's
               session (schedstat, exact: harness.session_cpu_s), over the
               whole wrk run, connects included
  requests     the responses wrk counted; errors apart (connect, read, write,
               timeout, non-2xx status)
  latency      wrk's p50 / p90 / p99 / max, from its own HdrHistogram

Server CPU µs per request is the figure that survives a noisy machine: it
does not count time the server spent waiting for a CPU.  Ratios in the
summary are taken to nginx (the C floor) and to uvicorn (uvloop + httptools)
when they ran, within the same repeat set.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iomodels import models
from iomodels.core.server import ReadyLine
from iomodels.harness import ServerProcess, ServerStartError
from iomodels.webbench import peers, wrk

HOST = "127.0.0.1"  # loopback only
SCHEMA = 1


@dataclass
class HttpSettings:
    targets: list[str]  # model names and peer names
    connections: list[int] = field(default_factory=lambda: [1, 10, 100, 1000])
    duration_s: float = 3.0
    warmup_s: float = 1.0
    pipeline: int = 1
    path: str = "/plaintext"
    repeats: int = 1
    timeout_s: float = 2.0
    server_args: list[str] = field(default_factory=list)  # extra `iomodels serve` options for models


def kind_of(target: str) -> str:
    if target in peers.PEERS:
        return "peer"
    if target in models.names():
        return "model"
    raise ValueError(f"unknown target {target!r}: neither a model ({', '.join(models.names())}) "
                     f"nor a peer ({', '.join(peers.names())})")  # fmt: skip


def unavailable_reason(target: str) -> str | None:
    if kind_of(target) == "peer":
        ok, why = peers.get(target).available()
    else:
        ok, why = models.available(target)
    return None if ok else why


def free_port(host: str = HOST) -> int:
    """A port free now (the kernel's pick); peers need theirs on the command line."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get_ok(host: str, port: int, path: str, timeout_s: float = 1.0) -> bool:
    """One GET with Connection: close; True on a 2xx status line."""
    try:
        with socket.create_connection((host, port), timeout_s) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2"))


class PeerProcess(ServerProcess):
    """A peer's command line under the harness: ready once it answers GET ``path``."""

    def __init__(self, peer: peers.Peer, *, cpu: int | None, scratch: Path, path: str = "/plaintext",
                 ready_timeout_s: float = 20.0, log_path: Path | None = None) -> None:  # fmt: skip
        self.peer = peer
        self.probe_path = path
        self.bind_port = free_port()
        super().__init__(
            command=peer.argv(HOST, self.bind_port, scratch),
            cpu=cpu,
            ready_timeout_s=ready_timeout_s,
            log_path=log_path,
        )

    def _read_ready_line(self) -> ReadyLine:
        assert self.proc is not None
        end = time.monotonic() + self.ready_timeout_s
        while not http_get_ok(HOST, self.bind_port, self.probe_path):
            if self.proc.poll() is not None:
                raise self._start_error(f"exited with status {self.proc.returncode} before answering")
            if time.monotonic() > end:
                raise self._start_error(
                    f"no answer on {HOST}:{self.bind_port} within {self.ready_timeout_s:g} s"
                )
            time.sleep(0.05)
        return ReadyLine(HOST, self.bind_port, self.peer.name, "http")


def cpu_split() -> tuple[int | None, set[int] | None]:
    """(server CPU, wrk CPUs): the server alone on one CPU, wrk on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], set(cpus[1:])


def start_target(target: str, settings: HttpSettings, cpu: int | None, scratch: Path) -> ServerProcess:
    if kind_of(target) == "peer":
        return PeerProcess(peers.get(target), cpu=cpu, scratch=scratch, path=settings.path).start()
    server = ServerProcess(target, protocol="http", args=settings.server_args,
                           cpu=cpu)  # fmt: skip
    return server.start()


def measure(
    server: ServerProcess, settings: HttpSettings, connections: int, wrk_cpus: set[int] | None
) -> dict:
    url = f"http://{server.host}:{server.port}{settings.path}"
    cpu0 = server.cpu_seconds()
    result = wrk.run(url, connections=connections, duration_s=settings.duration_s,
                     pipeline=settings.pipeline, timeout_s=settings.timeout_s, cpus=wrk_cpus)  # fmt: skip
    cpu_s = server.cpu_seconds() - cpu0
    row = result.as_dict()
    row["cpu_s"] = cpu_s
    row["cpu_us_per_req"] = cpu_s * 1e6 / result.requests if result.requests else None
    return row


class HttpRunner:
    def __init__(self, settings: HttpSettings, progress: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.progress = progress
        self.cells: list[dict[str, Any]] = []

    def run(self) -> list[dict[str, Any]]:
        if wrk.wrk_path() is None:
            raise wrk.WrkMissing(wrk.INSTALL_HINT)
        server_cpu, wrk_cpus = cpu_split()
        targets = self.settings.targets
        for rep in range(self.settings.repeats):
            shift = rep % len(targets) if targets else 0
            for target in targets[shift:] + targets[:shift]:
                self._run_target(target, rep, server_cpu, wrk_cpus)
        return self.cells

    def _base(self, target: str, rep: int, connections: int) -> dict[str, Any]:
        return {"target": target, "kind": kind_of(target), "repeat": rep, "connections": connections,
                "pipeline": self.settings.pipeline, "path": self.settings.path}  # fmt: skip

    def _run_target(self, target: str, rep: int, server_cpu: int | None, wrk_cpus: set[int] | None) -> None:
        why = unavailable_reason(target)
        if why is not None:
            for c in self.settings.connections:
                self.cells.append({**self._base(target, rep, c), "skipped": why})
            self.progress(f"{target}: skipped ({why})")
            return
        with tempfile.TemporaryDirectory(prefix="iomodels-peer-") as scratch:
            try:
                server = start_target(target, self.settings, server_cpu, Path(scratch))
            except ServerStartError as exc:
                for c in self.settings.connections:
                    self.cells.append({**self._base(target, rep, c), "failed": str(exc)})
                self.progress(f"{target}: failed to start: {exc}")
                return
            try:
                if self.settings.warmup_s > 0:
                    with contextlib.suppress(RuntimeError):
                        wrk.run(f"http://{server.host}:{server.port}{self.settings.path}", connections=10,
                                duration_s=self.settings.warmup_s, cpus=wrk_cpus)  # fmt: skip
                for c in self.settings.connections:
                    cell = self._base(target, rep, c)
                    try:
                        cell.update(measure(server, self.settings, c, wrk_cpus))
                    except RuntimeError as exc:
                        cell["failed"] = str(exc)
                    self.cells.append(cell)
                    self.progress(_progress_line(cell))
            finally:
                server.stop()


def _progress_line(cell: dict[str, Any]) -> str:
    head = f"{cell['target']:<17} c={cell['connections']:<5}"
    if "failed" in cell:
        return f"{head} failed: {cell['failed'][:80]}"
    cpu = cell["cpu_us_per_req"]
    return (f"{head} {cell['rps']:>9,.0f} req/s  p50 {cell['p50_us'] / 1000:6.2f} ms  "
            f"p99 {cell['p99_us'] / 1000:6.2f} ms  cpu {cpu if cpu is None else round(cpu, 1)} us/req  "
            f"errors {cell['errors']}")  # fmt: skip


def summarize(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (target, connections): medians over repeats, ratios to nginx and uvicorn."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["target"], cell["connections"]), []).append(cell)
    rows = []
    for (target, c), group in groups.items():
        ok = [g for g in group if "rps" in g and g.get("cpu_us_per_req")]
        row: dict[str, Any] = {"target": target, "kind": group[0]["kind"], "connections": c, "runs": len(ok)}
        if not ok:
            row["note"] = group[0].get("skipped") or group[0].get("failed") or "no result"
        else:
            for key in ("rps", "p50_us", "p99_us", "cpu_us_per_req"):
                row[key] = statistics.median(g[key] for g in ok)
            row["errors"] = sum(g["errors"] for g in ok)
        rows.append(row)
    by = {(r["target"], r["connections"]): r for r in rows}
    for row in rows:
        for ref in ("nginx", "uvicorn"):
            base = by.get((ref, row["connections"]))
            if base and base.get("cpu_us_per_req") and row.get("cpu_us_per_req"):
                row[f"cpu_vs_{ref}"] = row["cpu_us_per_req"] / base["cpu_us_per_req"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The summary as a plain-text table (fits 120 columns)."""
    head = (f"{'server':<17} {'conns':>5} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'cpu us/req':>10} "
            f"{'vs nginx':>8} {'vs uvicorn':>10} {'errors':>6}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r["connections"], r.get("cpu_us_per_req") or 1e9)):
        if "rps" not in r:
            lines.append(f"{r['target']:<17} {r['connections']:>5}  {r['note'][:90]}")
            continue

        lines.append(
            f"{r['target']:<17} {r['connections']:>5} {r['rps']:>9,.0f} {r['p50_us'] / 1000:>7.2f} "
            f"{r['p99_us'] / 1000:>7.2f} {r['cpu_us_per_req']:>10.1f} {_ratio(r, 'cpu_vs_nginx'):>8} "
            f"{_ratio(r, 'cpu_vs_uvicorn'):>10} {r['errors']:>6}"
        )
    return "\n".join(lines)


def _ratio(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.2f}x" if key in row else "-"
