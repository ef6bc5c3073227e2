"""The bench the experiments run on: servers, clients, strace, time limits.

Servers: ``Lab.server`` starts an ``iomodels.harness.ServerProcess`` (session
  of its own, pinned, measured, stopped with SIGTERM then SIGKILL of its
  group) with any protocol, extra ``serve`` flags (``--poll-interval``) and
  inherited descriptors (``pass_fds``, claim 7), its log in the work folder.
Clients: small blocking helpers for the cheap claims, and ``Lab.load`` for a
  measured window of the load generator (compare.measure_cell).
Repeats: ``Lab.interleave`` runs a piece of an experiment ``Lab.repeats``
  times for each model it compares, the order rotated per repeat as
  ``compare --repeats`` does, so drift on a shared machine hits every model
  alike; ``repeated_sweep`` does it for load-generator sweeps and keeps
  every repeat beside the medians (base.py: how verdicts read them).
Bounded: ``Lab.time_limit`` arms SIGALRM; on expiry ``ClaimTimeout`` (a
  BaseException, so no ``except Exception`` swallows it) unwinds through the
  experiment's ``finally`` blocks, which stop every server, tracer and
  generator.  Loopback only.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from iomodels import models
from iomodels.claims.base import median
from iomodels.compare.runner import HOST, Settings, measure_cell
from iomodels.harness import ServerProcess, raise_nofile_limit, split_cpus

STRACE = shutil.which("strace")
STRACE_ATTACH_TIMEOUT_S = 5.0
STRACE_SETTLE_S = 0.3  # after "attached": let the tracer reach every thread


K = TypeVar("K")
R = TypeVar("R")


class ClaimTimeout(BaseException):
    """An experiment ran past its time limit."""


# ----------------------------------------------------------------------
# clients (blocking, loopback, every call bounded by a timeout)


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def roundtrip(sock: socket.socket, msg: bytes, expect: int | None = None) -> bytes:
    """Send msg, read until ``expect`` bytes (default len(msg)) came back."""
    want = len(msg) if expect is None else expect
    sock.sendall(msg)
    got = b""
    while len(got) < want:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF after {len(got)} of {want} bytes")
        got += chunk
    return got


def sequential_latencies_us(port: int, n: int, msg: bytes = b"x" * 64) -> list[float]:
    """n request/reply round trips on one connection, one at a time (µs each)."""
    out = []
    with connect(port) as sock:
        for _ in range(n):
            t0 = time.perf_counter()
            roundtrip(sock, msg)
            out.append((time.perf_counter() - t0) * 1e6)
    return out


def count_served(port: int, n: int, deadline_s: float, msg: bytes = b"ping\n") -> dict[str, int]:
    """Open n connections at once, one request each; count the correct replies.

    Non-blocking connects in batches (no SYN overflow), every socket held open
    until the deadline or until each one is answered or closed, then closed."""
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    got: dict[int, bytes] = {}
    served = closed = 0
    end = time.monotonic() + deadline_s
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((HOST, port))
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE)
            got[s.fileno()] = b""
        pending = len(socks)
        while pending and time.monotonic() < end:
            for key, ev in sel.select(timeout=max(0.0, min(0.2, end - time.monotonic()))):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if ev & selectors.EVENT_WRITE:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        sel.unregister(s)
                        closed += 1
                        pending -= 1
                        continue
                    try:
                        s.send(msg)
                    except OSError:
                        sel.unregister(s)
                        closed += 1
                        pending -= 1
                        continue
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(s)
                    closed += 1
                    pending -= 1
                    continue
                got[s.fileno()] += chunk
                if len(got[s.fileno()]) >= len(msg):
                    sel.unregister(s)
                    served += 1
                    pending -= 1
        return {"tried": n, "served": served, "closed_by_server": closed, "no_answer": n - served - closed}
    finally:
        sel.close()
        for s in socks:
            s.close()


# ----------------------------------------------------------------------
# strace


SUMMARY_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def parse_strace_summary(text: str) -> dict[str, int]:
    """``strace -c`` table -> {syscall: calls} (the 'total' row dropped)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        m = SUMMARY_ROW.match(line)
        if m and m.group(3) != "total":
            calls[m.group(3)] = int(m.group(1))
    return calls


class Strace:
    """``strace OPTIONS -f -p PID -o FILE`` attached to a running server; stop() detaches."""

    def __init__(self, pid: int, out: Path, options: list[str]) -> None:
        if STRACE is None:
            raise RuntimeError("strace is not installed")
        self.out = out
        self.proc = subprocess.Popen(
            [STRACE, *options, "-f", "-o", str(out), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        self.messages = b""
        end = time.monotonic() + STRACE_ATTACH_TIMEOUT_S
        try:
            while b"attached" not in self.messages:
                if time.monotonic() > end or self.proc.poll() is not None:
                    self._read_stderr()
                    raise RuntimeError(f"strace did not attach: {self.messages.decode(errors='replace')}")
                self._read_stderr()
                time.sleep(0.02)
            time.sleep(STRACE_SETTLE_S)
        except BaseException:
            self.stop()
            raise

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(BlockingIOError, TypeError):
            data = self.proc.stderr.read()
            if data:
                self.messages += data

    def stop(self) -> str:
        """Detach (SIGINT, as Ctrl-C) and return the output file's text."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            if self.proc.stderr:
                self._read_stderr()
                self.proc.stderr.close()
        try:
            return self.out.read_text(errors="replace")
        except OSError:
            return ""


# ----------------------------------------------------------------------
# the lab


QUICK_REPEATS = 3  # --quick: the fewest that give a median and a range
FULL_REPEATS = 5


class Lab:
    """What run(lab, quick) gets: a work directory, servers, load, progress, repeats."""

    def __init__(
        self, out_dir: Path, progress: Callable[[str], None] = lambda s: None, repeats: int = 1
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, not {repeats}")
        self.repeats = repeats
        self.out_dir = out_dir
        self.work = out_dir / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.server_cpu, gen_cpus = split_cpus()  # as compare splits them
        self.gen_cpus = frozenset(gen_cpus) if gen_cpus else None
        self.nofile = raise_nofile_limit()
        self._n = 0

    def path(self, name: str) -> Path:
        return self.work / name

    def interleave(self, keys: list[K], measure: Callable[[K, int], R]) -> dict[K, list[R]]:
        """``measure(key, repeat)`` for every repeat and key: {key: [one result per repeat]}.

        Repeat r runs the keys rotated by r (as ``compare --repeats``): no model
        always goes first, and a slow minute of the machine lands on every
        model's repeats rather than on all of one model's."""
        out: dict[K, list[R]] = {k: [] for k in keys}
        for rep in range(self.repeats):
            k = rep % len(keys) if keys else 0
            for key in keys[k:] + keys[:k]:
                if self.repeats > 1:
                    self.progress(f"repeat {rep + 1}/{self.repeats}: {key}")
                out[key].append(measure(key, rep))
        return out

    def unavailable(self, *names: str) -> str | None:
        """Why one of these models cannot run here, or None."""
        for name in names:
            ok, reason = models.available(name)
            if not ok:
                return f"model {name} is not available here: {reason}"
        return None

    @contextlib.contextmanager
    def server(
        self,
        model: str,
        protocol: str = "echo",
        extra: list[str] | tuple[str, ...] = (),
        pass_fds: tuple[int, ...] = (),
        pin: bool = True,
    ) -> Iterator[ServerProcess]:
        self._n += 1
        server = ServerProcess(
            model,
            protocol,
            extra,
            host=HOST,
            cpu=self.server_cpu if pin else None,
            log_path=self.work / f"{self._n:03d}-{model}.log",
            pass_fds=pass_fds,
        )
        with server:
            yield server

    def load(
        self,
        server: ServerProcess,
        connections: int,
        idle: int = 0,
        duration_s: float = 1.5,
        settle_s: float = 0.3,
        msize: int = 1024,
        timeout_s: float = 2.0,
    ) -> dict[str, Any]:
        """One measured window of the load generator on ``server`` (compare.measure_cell)."""
        settings = Settings(
            models=[server.model],
            msize=msize,
            duration_s=duration_s,
            settle_s=settle_s,
            drain_s=1.0,
            timeout_s=timeout_s,
            workers=1,
            gen_cpus=sorted(self.gen_cpus) if self.gen_cpus else None,
        )
        cell = measure_cell(server, settings, connections, idle)
        cell.pop("histogram", None)  # the encoded HDR blob: big, and the summary is in "latency"
        return cell

    @staticmethod
    @contextlib.contextmanager
    def time_limit(seconds: float) -> Iterator[None]:
        """Raise ClaimTimeout in the main thread after ``seconds``."""

        def expire(signum: int, frame: object) -> None:
            raise ClaimTimeout(f"ran past its time limit of {seconds:.0f} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def cpu_pct_over(server: ServerProcess, seconds: float) -> float:
    """The server's CPU use over a window of ``seconds`` with nothing sent (% of one CPU)."""
    c0 = server.cpu_seconds()
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = server.cpu_seconds()
    return round(100.0 * (c1 - c0) / (time.monotonic() - t0), 1)


def traced_requests(lab: Lab, model: str, requests: int, options: list[str], name: str) -> str:
    """Serve ``requests`` sequential 64-byte echo requests on one connection of a
    fresh ``model`` server while strace (``options``, -f) watches; the trace text."""
    msg = b"x" * 64
    with lab.server(model) as server, connect(server.port) as sock:
        for _ in range(20):  # warm-up: threads exist, buffers are registered
            roundtrip(sock, msg)
        tracer = Strace(server.pid, lab.path(name), options)
        try:
            for _ in range(requests):
                roundtrip(sock, msg)
        finally:
            text = tracer.stop()
    return text


CELL_KEYS = (
    "req_per_s",
    "srv_us_per_req",
    "srv_cpu_pct",
    "srv_rss_mib",
    "srv_pss_mib",
    "srv_threads",
    "srv_procs",
    "srv_fds",
    "errors_total",
    "noise_cpu_pct",
    "idle_alive",
)


def trim(cell: dict[str, Any]) -> dict[str, Any]:
    """The figures a claim keeps of a measured cell."""
    out = {k: cell.get(k) for k in CELL_KEYS}
    lat = cell.get("latency") or {}
    out["p50_us"] = lat.get("p50_us")
    out["p99_us"] = lat.get("p99_us")
    out["errors"] = {k: v for k, v in (cell.get("errors") or {}).items() if v}
    return out


def sweep(
    lab: Lab,
    model: str,
    points: list[tuple[int, int]],
    duration_s: float,
    extra: list[str] | tuple[str, ...] = (),
    timeout_s: float = 2.0,
    msize: int = 1024,
) -> list[dict[str, Any]]:
    """One server of ``model``; one measured window per (active, idle) point.

    A point that fails is recorded with its error and the sweep goes on (the
    server is restarted if it died), so one bad cell costs one cell."""
    rows: list[dict[str, Any]] = []
    why = lab.unavailable(model)
    if why:
        return [{"active": a, "idle": i, "status": "skipped", "reason": why} for a, i in points]
    server_cm = lab.server(model, extra=extra)
    server = server_cm.__enter__()
    try:
        for active, idle in points:
            lab.progress(f"{model}: {active} connections" + (f" + {idle} idle" if idle else ""))
            if not server.alive():
                server_cm.__exit__(None, None, None)
                server_cm = lab.server(model, extra=extra)
                server = server_cm.__enter__()
            try:
                cell = lab.load(server, active, idle, duration_s=duration_s, timeout_s=timeout_s, msize=msize)
                rows.append({"active": active, "idle": idle, "status": "ok", **trim(cell)})
            except Exception as exc:
                rows.append(
                    {
                        "active": active,
                        "idle": idle,
                        "status": "error",
                        "reason": f"{type(exc).__name__}: {exc}",
                    }
                )
    finally:
        server_cm.__exit__(None, None, None)
    return rows


MERGED_KEYS = (*CELL_KEYS, "p50_us", "p99_us")


def merge(repeats: list[dict[str, Any]], keys: tuple[str, ...] = MERGED_KEYS) -> dict[str, Any]:
    """One sweep point's repeats -> the medians of ``keys`` over the repeats that ran, and every repeat.

    ``status`` is "ok" when at least one repeat ran; ``repeats`` keeps each
    one as measured (failures included, with their reason)."""
    first = repeats[0]
    row: dict[str, Any] = {"active": first["active"], "idle": first["idle"]}
    kept = [{k: v for k, v in r.items() if k not in ("active", "idle")} for r in repeats]
    ok = [r for r in kept if r.get("status") == "ok"]
    if not ok:
        return {**row, "status": first.get("status"), "reason": first.get("reason"), "repeats": kept}
    row["status"] = "ok"
    for key in keys:
        m = median([r.get(key) for r in ok])
        row[key] = int(m) if m is not None and m.is_integer() else m
    row["repeats"] = kept
    return row


def samples(row: dict[str, Any], key: str) -> list[float]:
    """The value of ``key`` in every repeat of a merged row that ran."""
    return [r[key] for r in row.get("repeats", [row]) if r.get("status") == "ok" and r.get(key) is not None]


def repeated_sweep(
    lab: Lab,
    plans: dict[str, tuple[str, list[tuple[int, int]], list[str] | tuple[str, ...]]],
    duration_s: float,
    timeout_s: float = 2.0,
    msize: int = 1024,
) -> dict[str, list[dict[str, Any]]]:
    """``sweep`` for each plan {key: (model, points, extra)}, ``lab.repeats`` times,
    interleaved; {key: [merged row per point]} (see ``merge``)."""

    def one(key: str, rep: int) -> list[dict[str, Any]]:
        model, points, extra = plans[key]
        return sweep(lab, model, points, duration_s, extra=extra, timeout_s=timeout_s, msize=msize)

    runs = lab.interleave(list(plans), one)
    return {key: [merge(list(point)) for point in zip(*reps, strict=True)] for key, reps in runs.items()}
