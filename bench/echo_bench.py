#!/usr/bin/env python3
"""Closed-loop echo benchmark for the iomodels servers (loopback only).

For every requested model this script starts ``python -m iomodels serve
--model MODEL --protocol echo --port 0 --host 127.0.0.1``, pins the server
(every thread, and any child) to one CPU and the load generator to another,
opens ``--connections`` TCP connections, warms up (unmeasured), then measures
for ``--duration`` seconds: each connection sends ``--msize`` bytes and waits
for the whole echo before sending the next message (closed loop).

Reported per model (medians over ``--repeats`` interleaved rounds, so drift on
a noisy shared machine hits every model alike):

  req/s          requests completed per second, all connections together
  srv CPU%       server CPU time (the scheduler's exact runtime of every thread
                 of the server's session, children included, as iomodels
                 compare reads it) / wall time of the window
  srv us/req     server CPU microseconds per request (the figure to compare)
  usr, sys       srv us/req split into user mode (Python, libc, uvloop's C) and
                 kernel mode (syscalls, TCP, softirq), as the kernel accounts it
                 (tick-sampled at CONFIG_HZ, scaled to the exact runtime)
  srv vcsw/req   voluntary context switches of the server per request: about
                 how often it blocked (in epoll_wait, recv, ...) per request
  p50/p99 us     request latency: send of the first byte to receipt of the
                 last byte of its echo, every request of the window, sorted
  sirq us/req    softirq time per request on the server's CPU (/proc/stat,
                 tick-sampled): loopback TCP receive processing of what the
                 server sends.  On kernels without CONFIG_IRQ_TIME_ACCOUNTING
                 it is also inside srv us/req (charged to the interrupted task)
  foreign%       busy time on the server's CPU that is not the server's (other
                 tenants of a shared machine); rough, near 0 on a quiet machine
  gen CPU%       the load generator's own CPU (sum over --workers); near 100%
                 per generator CPU means the generator, not the server, is
                 the limit (the server's us/req is still valid)

The load generator is a single-threaded level-triggered epoll loop over
non-blocking sockets (recv_into a preallocated buffer, one constant message),
run in ``--workers`` processes (default 1, each with its own share of the
connections), all pinned to ``--client-cpu``.  Between phases every
connection is drained (no request in flight), so the server is idle when a
window opens and closes and attach/detach of a profiler costs no requests.

Profiling (optional, ``--profile TOOL``): after the warm-up, the tool is
attached to the server pid, the server stays idle ``--attach-delay`` seconds,
one window is measured, the tool is stopped with SIGINT.  The numbers of that
window are perturbed by the tool and flagged so; the tool's output is written
to ``--profile-dir`` and summarised:

  pyspy       py-spy record (Python frames; a sample inside a C call such as
              socket.send is charged to the Python line that made it)
  pyspynative py-spy record --native (C frames too; in our runs its samples land
              almost only in syscalls, so use perfrecord for user vs kernel)
  strace      strace -c -f (syscalls per request, by name; slows the server a lot)
  perfsys     perf stat on the syscall tracepoints (syscalls per request, by name,
              counted in the kernel: little perturbation)
  perfstat    perf stat -e task-clock,context-switches,cpu-migrations,page-faults
  perfrecord  perf record -e cpu-clock -g (kernel vs libpython vs ... by DSO)

Every server this script starts runs in its own process group and is stopped
(SIGTERM, then SIGKILL of that group) in a ``finally``.  Each phase has a
deadline, so a run takes about
repeats * models * (startup + warmup + duration + 2 * drain) seconds.

Examples:
  .venv/bin/python bench/echo_bench.py                     # epoll,asyncio,uvloop x3
  .venv/bin/python bench/echo_bench.py --models epoll,poll,select,threads \\
      --duration 3 --repeats 3 --json /tmp/bench.json
  .venv/bin/python bench/echo_bench.py --models epoll,asyncio,uvloop --repeats 1 \\
      --profile strace --profile-dir /tmp/prof
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import platform
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
from iomodels.harness import session_cpu_s  # noqa: E402 (the path above)

try:
    import psutil
except ImportError:  # pragma: no cover - documented dependency
    sys.exit("echo_bench.py needs psutil (pip install psutil)")

HOST = "127.0.0.1"  # loopback only, on purpose
PROFILE_TOOLS = ("pyspy", "pyspynative", "strace", "perfsys", "perfstat", "perfrecord")
SYSCALLS = (
    "recvfrom",
    "sendto",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "read",
    "write",
    "readv",
    "writev",
    "recvmsg",
    "sendmsg",
    "accept4",
    "getpid",
    "futex",
)


# --------------------------------------------------------------------------
# load generator (runs in worker processes)


class _Gen:
    """One worker's connections and its closed-loop epoll driver."""

    def __init__(self, port: int, nconn: int, msize: int) -> None:
        self.msize = msize
        self.msg = (b"0123456789abcdef" * (msize // 16 + 1))[:msize]
        self.socks: list[socket.socket] = []
        for _ in range(nconn):
            s = socket.create_connection((HOST, port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.socks.append(s)
        self.ep = select.epoll()
        self.index = {}
        for i, s in enumerate(self.socks):
            self.ep.register(s.fileno(), select.EPOLLIN)
            self.index[s.fileno()] = i
        self.buf = bytearray(max(65536, msize))

    def _send(self, i: int) -> None:
        s = self.socks[i]
        sent = s.send(self.msg)
        if sent != self.msize:  # never seen with <= 1 socket buffer in flight
            s.setblocking(True)
            s.sendall(memoryview(self.msg)[sent:])
            s.setblocking(False)

    def phase(self, duration: float, record: bool) -> dict:
        """Run load for ``duration`` s, then drain; return counts and latencies (ns)."""
        n = len(self.socks)
        msize = self.msize
        got = [0] * n
        t_sent = [0] * n
        recv_into = [s.recv_into for s in self.socks]
        index = self.index
        buf = self.buf
        poll = self.ep.poll
        clock = time.perf_counter_ns
        send = self._send
        lat: list[int] = []
        append = lat.append
        count = 0
        r0 = os.times()
        w0 = clock()
        deadline = w0 + int(duration * 1e9)
        hard = deadline + int(10e9)  # a stuck server fails the phase, never hangs
        for i in range(n):
            t_sent[i] = clock()
            send(i)
        inflight = n
        stopping = False
        while inflight:
            events = poll(1.0)
            if not events and clock() > hard:
                raise RuntimeError(f"server stuck: {inflight} requests unanswered")
            for fd, _ev in events:
                i = index[fd]
                k = recv_into[i](buf)
                if not k:
                    raise RuntimeError("server closed a connection")
                g = got[i] + k
                if g < msize:
                    got[i] = g
                    continue
                if g > msize:
                    raise RuntimeError("echo longer than the request")
                got[i] = 0
                now = clock()
                count += 1
                if record:
                    append(now - t_sent[i])
                if stopping:
                    inflight -= 1
                    continue
                t_sent[i] = now
                send(i)
            if not stopping and clock() >= deadline:
                stopping = True
        w1 = clock()
        r1 = os.times()
        return {
            "requests": count,
            "wall_s": (w1 - w0) / 1e9,
            "cpu_s": (r1.user - r0.user) + (r1.system - r0.system),
            "lat_ns": lat,
        }

    def close(self) -> None:
        self.ep.close()
        for s in self.socks:
            s.close()


def _worker(conn, port: int, nconn: int, msize: int, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    gen = None
    try:
        gen = _Gen(port, nconn, msize)
        conn.send(("ok", None))
        while True:
            cmd = conn.recv()
            if cmd[0] == "phase":
                conn.send(("ok", gen.phase(cmd[1], cmd[2])))
            else:
                break
    except Exception as exc:  # report, never hang the parent
        conn.send(("error", repr(exc)))
    finally:
        if gen is not None:
            gen.close()


class LoadGenerator:
    def __init__(self, port: int, connections: int, workers: int, msize: int, cpu: int | None):
        ctx = mp.get_context("fork")
        self.procs = []
        self.pipes = []
        per = [connections // workers + (1 if w < connections % workers else 0) for w in range(workers)]
        for w in range(workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, port, per[w], msize, cpu), daemon=True)
            p.start()
            self.procs.append(p)
            self.pipes.append(parent)
        for pipe in self.pipes:
            self._reply(pipe, 30)

    @staticmethod
    def _reply(pipe, timeout: float):
        if not pipe.poll(timeout):
            raise RuntimeError("load generator did not answer in time")
        status, value = pipe.recv()
        if status != "ok":
            raise RuntimeError(f"load generator failed: {value}")
        return value

    def phase(self, duration: float, record: bool) -> dict:
        for pipe in self.pipes:
            pipe.send(("phase", duration, record))
        parts = [self._reply(pipe, duration + 30) for pipe in self.pipes]
        lat = []
        for p in parts:
            lat.extend(p["lat_ns"])
        return {
            "requests": sum(p["requests"] for p in parts),
            "req_per_s": sum(p["requests"] / p["wall_s"] for p in parts),
            "wall_s": max(p["wall_s"] for p in parts),
            "gen_cpu_pct": sum(100.0 * p["cpu_s"] / p["wall_s"] for p in parts),
            "lat_ns": lat,
        }

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


# --------------------------------------------------------------------------
# the server under test


class ServerProc:
    def __init__(self, python: str, model: str, extra: list[str], log_path: Path) -> None:
        self.model = model
        # A variant: MODEL:ARG[:ARG...] adds serve arguments for this column only.
        model, *variant = model.split(":")
        env_extra = dict(v.split("=", 1) for v in variant if "=" in v and not v.startswith("-"))
        extra = [*(v for v in variant if v.startswith("-") or "=" not in v), *extra]
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        cmd = [
            python,
            "-m",
            "iomodels",
            "serve",
            "--model",
            model,
            "--protocol",
            "echo",
            "--host",
            HOST,
            "--port",
            "0",
            "--log-level",
            "warning",
            *extra,
        ]
        env = dict(os.environ, **env_extra)
        src = str(REPO / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log, env=env, start_new_session=True
        )
        self.pid = self.proc.pid
        self.port = self._ready(10.0)
        self.ps = psutil.Process(self.pid)

    def _ready(self, timeout: float) -> int:
        line = b""
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"{self.model}: no ready line; see {self.log_path}")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"{self.model}: server exited; see {self.log_path}")
                line += chunk
        m = re.match(rb"listening on (\S+):(\d+) ", line)
        if not m:
            raise RuntimeError(f"{self.model}: unexpected ready line {line!r}")
        return int(m.group(2))

    def procs(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def pin(self, cpu: int | None) -> None:
        if cpu is None:
            return
        for p in self.procs():
            try:
                for t in p.threads():  # sched_setaffinity(pid) pins one thread only
                    os.sched_setaffinity(t.id, {cpu})
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass

    def counters(self) -> tuple[float, int, float, float]:
        """(exact CPU s, voluntary context switches, user and total CPU s in
        ticks) of the server and its children.  The exact figure is the
        scheduler's runtime of the whole session (iomodels compare's
        session_cpu_s); utime/stime only give the user/system split."""
        ticks = 0.0
        user = 0.0
        vcsw = 0
        for p in self.procs():
            try:
                t = p.cpu_times()
                ticks += t.user + t.system + t.children_user + t.children_system
                user += t.user + t.children_user
                vcsw += p.num_ctx_switches().voluntary
            except psutil.NoSuchProcess:
                pass
        return session_cpu_s(self.pid), vcsw, user, ticks

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(8)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the group we created: children too
            except ProcessLookupError:
                pass
            if self.proc.poll() is None:
                self.proc.wait(5)
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()
            self.log.close()


# --------------------------------------------------------------------------
# profilers


def profile_cmd(tool: str, pid: int, out: Path, rate: int) -> list[str]:
    if tool in ("pyspy", "pyspynative"):
        exe = Path(sys.executable).with_name("py-spy")
        native = ["--native"] if tool == "pyspynative" else []
        return [
            str(exe) if exe.exists() else "py-spy",
            "record",
            *native,
            "-r",
            str(rate),
            "-f",
            "raw",
            "-o",
            str(out),
            "-p",
            str(pid),
        ]
    if tool == "strace":
        return ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)]
    if tool == "perfsys":  # syscall tracepoints, counted in the kernel: cheap, unlike strace
        events = ",".join(["raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{n}" for n in SYSCALLS)])
        return ["perf", "stat", "-x", ",", "-e", events, "-o", str(out), "-p", str(pid)]
    if tool == "perfstat":
        return [
            "perf",
            "stat",
            "-e",
            "task-clock,context-switches,cpu-migrations,page-faults",
            "-o",
            str(out),
            "-p",
            str(pid),
        ]
    if tool == "perfrecord":
        return ["perf", "record", "-e", "cpu-clock", "-F", str(rate), "-g", "-o", str(out), "-p", str(pid)]
    raise ValueError(tool)


def summarize_pyspy(path: Path, top: int = 15) -> dict:
    """Self and total sample shares per function from py-spy's collapsed stacks."""
    self_n: collections.Counter = collections.Counter()
    total_n: collections.Counter = collections.Counter()
    n = 0
    for line in path.read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not stack:
            continue
        c = int(cnt)
        n += c
        frames = [_short(f) for f in stack.split(";")]
        self_n[frames[-1]] += c
        for f in set(frames):
            total_n[f] += c
    pct = lambda k: round(100.0 * k / n, 1) if n else 0.0  # noqa: E731
    return {
        "samples": n,
        "self": [(f, pct(c)) for f, c in self_n.most_common(top)],
        "total": [(f, pct(c)) for f, c in total_n.most_common(top + 10)],
    }


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"; native frames keep their name
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({os.path.basename(m.group(2))})"


def summarize_strace(path: Path, requests: int) -> dict:
    calls = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                pass
    total = sum(calls.values())
    return {
        "requests": requests,
        "syscalls": total,
        "per_request": round(total / requests, 3) if requests else None,
        "by_name": {k: round(v / requests, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}
        if requests
        else {},
    }


def summarize_perfsys(path: Path, requests: int) -> dict:
    counts = {}
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[0].strip().isdigit():
            name = parts[2].split(":")[-1].replace("sys_enter_", "")
            counts["ALL" if name == "sys_enter" else name] = int(parts[0])
    total = counts.pop("ALL", sum(counts.values()))
    return {
        "requests": requests,
        "syscalls": total,
        "per_request": round(total / requests, 3) if requests else None,
        "by_name": {k: round(v / requests, 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v}
        if requests
        else {},
    }


def summarize_perfrecord(path: Path) -> dict:
    try:
        out = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(path),
                "--no-children",
                "--sort",
                "dso",
                "--stdio",
                "-q",
                "-g",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        sym = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(path),
                "--no-children",
                "--sort",
                "dso,sym",
                "--stdio",
                "-q",
                "-g",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": repr(exc)}
    dso = [ln.strip() for ln in out.splitlines() if ln.strip()][:10]
    syms = [ln.strip() for ln in sym.splitlines() if ln.strip()][:25]
    return {"by_dso": dso, "top_symbols": syms}


# --------------------------------------------------------------------------
# one cell: one server, one warm-up, one measured window


def percentile(sorted_vals: list[int], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, round(q * (len(sorted_vals) - 1)))]


def cpu_ticks() -> dict[int, list[int]]:
    """Per-CPU /proc/stat jiffies: user nice system idle iowait irq softirq steal."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                out[int(m.group(1))] = [int(x) for x in m.group(2).split()[:8]]
    return out


def run_cell(args, model: str, round_no: int) -> dict:
    logdir = Path(args.profile_dir or "/tmp")
    server = ServerProc(
        args.python,
        model,
        args.server_arg or [],
        logdir / f"echo_bench-{re.sub(r'[^A-Za-z0-9_.=-]+', '_', model)}-{os.getpid()}.log",
    )
    gen = None
    tool = None
    result: dict = {"model": model, "round": round_no}
    try:
        server.pin(args.server_cpu)
        gen = LoadGenerator(server.port, args.connections, args.workers, args.msize, args.client_cpu)
        server.pin(args.server_cpu)  # threads/children made per connection
        if args.warmup > 0:
            gen.phase(args.warmup, record=False)
        server.pin(args.server_cpu)
        out = None
        if args.profile:
            ext = {
                "pyspy": "txt",
                "pyspynative": "txt",
                "strace": "txt",
                "perfsys": "csv",
                "perfstat": "txt",
                "perfrecord": "data",
            }
            out = Path(args.profile_dir) / f"{args.profile}-{model}.{ext[args.profile]}"
            tool = subprocess.Popen(
                profile_cmd(args.profile, server.pid, out, args.rate),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(args.attach_delay)  # the server is idle: nothing is lost
            if tool.poll() is not None:
                raise RuntimeError(
                    f"{args.profile} exited at once: {tool.stderr.read().decode(errors='replace')[-500:]}"
                )
        cpu0, cs0, usr0, ticks0 = server.counters()
        st0 = cpu_ticks()
        m = gen.phase(args.duration, record=True)
        st1 = cpu_ticks()
        cpu1, cs1, usr1, ticks1 = server.counters()
        if tool is not None:
            tool.send_signal(signal.SIGINT)
            try:
                _, err = tool.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                tool.kill()
                _, err = tool.communicate()
            result["profile_stderr_tail"] = err.decode(errors="replace")[-400:]
            tool = None
        lat = sorted(m.pop("lat_ns"))
        req = m["requests"]
        # user time: the tick-sampled share of user mode, applied to the exact runtime
        user_share = (usr1 - usr0) / (ticks1 - ticks0) if ticks1 > ticks0 else 0.0
        usr_s = user_share * (cpu1 - cpu0)
        hz = os.sysconf("SC_CLK_TCK")
        delta = {c: [b - a for a, b in zip(st0[c], st1[c], strict=False)] for c in st1 if c in st0}
        if args.server_cpu is not None and args.server_cpu in delta:
            d = delta[args.server_cpu]
            busy = (sum(d) - d[3] - d[4]) / hz  # everything but idle and iowait
            # softirq (tick-sampled): on loopback the TCP receive side of the server's
            # own sends runs on its CPU in softirq context.  Without
            # CONFIG_IRQ_TIME_ACCOUNTING (the case here) Linux also charges that time
            # to the process it interrupted, so it is *part of* srv us/req.
            result["srv_cpu_softirq_us_per_req"] = round(1e6 * (d[6] / hz) / req, 2) if req else None
            # busy time on the server's CPU that is not the server's: other tenants
            # of this shared machine (noise; rough, the two clocks differ by ~5%)
            result["srv_cpu_foreign_pct"] = round(100.0 * (busy - (cpu1 - cpu0)) / m["wall_s"], 1)
        result.update(
            requests=req,
            req_per_s=round(m["req_per_s"], 1),
            window_s=round(m["wall_s"], 3),
            srv_cpu_pct=round(100.0 * (cpu1 - cpu0) / m["wall_s"], 1),
            srv_us_per_req=round(1e6 * (cpu1 - cpu0) / req, 2) if req else None,
            srv_user_us_per_req=round(1e6 * usr_s / req, 2) if req else None,
            srv_sys_us_per_req=round(1e6 * ((cpu1 - cpu0) - usr_s) / req, 2) if req else None,
            srv_vcsw_per_req=round((cs1 - cs0) / req, 3) if req else None,
            p50_us=round(percentile(lat, 0.50) / 1e3, 1),
            p99_us=round(percentile(lat, 0.99) / 1e3, 1),
            gen_cpu_pct=round(m["gen_cpu_pct"], 1),
            perturbed_by=args.profile,
        )
        if args.profile and out is not None and out.exists():
            result["profile_file"] = str(out)
            if args.profile in ("pyspy", "pyspynative"):
                result["profile"] = summarize_pyspy(out)
            elif args.profile == "strace":
                result["profile"] = summarize_strace(out, req)
            elif args.profile == "perfsys":
                result["profile"] = summarize_perfsys(out, req)
            elif args.profile == "perfstat":
                result["profile"] = out.read_text()
            elif args.profile == "perfrecord":
                result["profile"] = summarize_perfrecord(out)
    finally:
        if tool is not None and tool.poll() is None:
            tool.kill()
            tool.wait()
        if gen is not None:
            gen.close()
        server.stop()
    return result


# --------------------------------------------------------------------------


COLS = [
    ("req/s", "req_per_s", "{:.0f}"),
    ("srv CPU%", "srv_cpu_pct", "{:.0f}"),
    ("srv us/req", "srv_us_per_req", "{:.2f}"),
    ("usr", "srv_user_us_per_req", "{:.2f}"),
    ("sys", "srv_sys_us_per_req", "{:.2f}"),
    ("srv vcsw/req", "srv_vcsw_per_req", "{:.3f}"),
    ("sirq us/req", "srv_cpu_softirq_us_per_req", "{:.2f}"),
    ("foreign%", "srv_cpu_foreign_pct", "{:.0f}"),
    ("p50 us", "p50_us", "{:.0f}"),
    ("p99 us", "p99_us", "{:.0f}"),
    ("gen CPU%", "gen_cpu_pct", "{:.0f}"),
]


def median_table(models: list[str], cells: list[dict]) -> tuple[str, dict]:
    med = {}
    for model in models:
        mine = [c for c in cells if c["model"] == model and "error" not in c]
        if not mine:
            continue
        med[model] = {key: statistics.median(c.get(key, float("nan")) for c in mine) for _, key, _ in COLS}
        med[model]["rounds"] = len(mine)
    base = med.get("epoll", {}).get("srv_us_per_req")
    head = ["model", *[c[0] for c in COLS], "us/req vs epoll", "rounds"]
    rows = []
    for model, v in med.items():
        rel = f"{v['srv_us_per_req'] / base:.2f}x" if base else "-"
        rows.append([model, *[fmt.format(v[key]) for _, key, fmt in COLS], rel, str(v["rounds"])])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt_row(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in pairs)

    lines = [fmt_row(head)] + [fmt_row(r) for r in rows]
    return "\n".join(lines), med


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import hashlib

    digest = hashlib.sha256()
    for f in sorted((REPO / "src" / "iomodels").rglob("*.py")):  # the code actually measured
        digest.update(f.read_bytes())
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        head = ""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
        "git_head": head,
        "src_sha256": digest.hexdigest()[:12],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--models",
        default="epoll,asyncio,uvloop",
        help="comma-separated models (default epoll,asyncio,uvloop); MODEL:ARG[:ARG...] is a "
        "variant with extra 'iomodels serve' arguments, e.g. io_uring:--uring-sends=plain; an ARG "
        "NAME=VALUE (no leading '-') sets an environment variable of that server",
    )
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (default 5)")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds of load first (default 1)")
    ap.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    ap.add_argument("--msize", type=int, default=1024, help="bytes per request (default 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every model (default 3)")
    ap.add_argument("--workers", type=int, default=1, help="load generator processes (default 1)")
    ap.add_argument(
        "--server-cpu", type=int, default=0, help="CPU for the server; -1: no pinning (default 0)"
    )
    ap.add_argument(
        "--client-cpu", type=int, default=1, help="CPU for the generator; -1: no pinning (default 1)"
    )
    ap.add_argument(
        "--python", default=sys.executable, help="interpreter that runs the server (default: this one)"
    )
    ap.add_argument("--server-arg", action="append", help="extra argument for 'iomodels serve' (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="write the machine, every cell and the medians as JSON")
    ap.add_argument("--profile", choices=PROFILE_TOOLS, help="attach this tool to the server for the window")
    ap.add_argument("--profile-dir", default=None, help="where profiles (and server logs) go (default /tmp)")
    ap.add_argument(
        "--attach-delay", type=float, default=1.5, help="idle seconds after attaching (default 1.5)"
    )
    ap.add_argument("--rate", type=int, default=250, help="py-spy / perf sampling rate in Hz (default 250)")
    args = ap.parse_args(argv)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.connections < args.workers or args.workers < 1 or args.duration <= 0 or args.msize < 1:
        ap.error("need workers >= 1, connections >= workers, duration > 0, msize >= 1")
    args.server_cpu = None if args.server_cpu < 0 else args.server_cpu
    args.client_cpu = None if args.client_cpu < 0 else args.client_cpu
    if args.profile:
        args.profile_dir = args.profile_dir or "/tmp/echo_bench_profiles"
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})  # this orchestrating process too

    info = machine()
    print(
        f"# {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}, Python {info['python']}, "
        f"loadavg {info['loadavg'][0]:.2f}, git {info['git_head']} src sha256 {info['src_sha256']}",
        flush=True,
    )
    print(
        f"# models={','.join(models)} connections={args.connections} msize={args.msize} "
        f"duration={args.duration}s warmup={args.warmup}s repeats={args.repeats} "
        f"workers={args.workers} server-cpu={args.server_cpu} client-cpu={args.client_cpu}"
        + (f" profile={args.profile}" if args.profile else ""),
        flush=True,
    )
    cells = []
    for r in range(args.repeats):
        order = models[r % len(models) :] + models[: r % len(models)]  # rotate: no fixed slot
        for model in order:
            try:
                cell = run_cell(args, model, r)
            except Exception as exc:  # one broken model must not stop the others
                cell = {"model": model, "round": r, "error": repr(exc)}
                print(f"round {r} {model}: ERROR {exc!r}", flush=True)
            else:
                print(
                    f"round {r} {model:10s} "
                    + "  ".join(f"{name}={fmt.format(cell[key])}" for name, key, fmt in COLS),
                    flush=True,
                )
                prof = cell.get("profile")
                if isinstance(prof, dict) and "self" in prof:
                    print(f"  py-spy {prof['samples']} samples; self %:")
                    for f, p in prof["self"]:
                        print(f"    {p:5.1f}  {f}")
                    print("  total (inclusive) %:")
                    for f, p in prof["total"]:
                        print(f"    {p:5.1f}  {f}")
                elif isinstance(prof, dict) and "per_request" in prof:
                    print(
                        f"  {args.profile}: {prof['syscalls']} syscalls / {prof['requests']} requests "
                        f"= {prof['per_request']} per request: {prof['by_name']}"
                    )
                elif isinstance(prof, dict) and "by_dso" in prof:
                    print("  perf record, self % by DSO:\n    " + "\n    ".join(prof["by_dso"]))
                    print("  top symbols:\n    " + "\n    ".join(prof["top_symbols"]))
                elif isinstance(prof, str):
                    print("  " + "\n  ".join(ln for ln in prof.splitlines() if ln.strip()))
                sys.stdout.flush()
            cells.append(cell)
    table, med = median_table(models, cells)
    print(
        f"\nmedians over {args.repeats} round(s)" + (" (PERTURBED by the profiler)" if args.profile else "")
    )
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "cells": cells, "medians": med}, f, indent=1)
        print(f"wrote {args.json}")
    return 0 if all("error" not in c for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
