#!/usr/bin/env python3
"""The standard cell, split finer than `iomodels compare` splits it, and profiled.

`iomodels compare` measures every model on a grid of connection counts.  This
script measures one cell (``--connections`` closed-loop connections echoing
``--msize`` bytes, loopback only) on a few models, or variants of them, in
``--repeats`` interleaved rounds, and adds what compare does not report:
where the server's CPU goes (user vs kernel, context switches, softirq), how
much of its CPU other tenants took, and, with ``--profile``, a profiler
attached to the server for the measured window.

Servers start through iomodels.harness (a session of their own, pinned to
``--server-cpu`` from the fork on, stopped with their whole group); the load
comes from iomodels.loadgen (``--workers`` processes pinned to
``--client-cpu``, every reply checked, HDR latency).  Between phases every
connection is drained, so the server is idle when a window opens and closes,
and attaching or detaching a profiler costs no requests.

Columns (per round, then medians over the rounds):

  req/s    requests completed per second, all connections together
  CPU%     server CPU (the scheduler's exact runtime of every thread and
           child of its session) / wall time of the window
  us/req   server CPU microseconds per request: the figure to compare
  usr sys  us/req split into user mode (Python, libc, uvloop's C) and kernel
           mode (syscalls, TCP), as the kernel's tick samples split it
  vcsw     voluntary context switches of the server (all its threads) per
           request: about how often it blocked per request
  sirq     softirq us per request on the server's CPU (/proc/stat, ticks):
           loopback TCP receive work of what the server sends.  Without
           CONFIG_IRQ_TIME_ACCOUNTING it is also inside us/req
  frgn%    busy time on the server's CPU that is not the server's: other
           tenants of a shared machine; near 0 on a quiet one
  p50 p99  latency in us, send of a request to the last byte of its echo
  gen%     the generator's CPU; near 100 per generator CPU means the
           generator was the limit (us/req stays valid)
  err      requests that failed (timeouts, resets, wrong echoes)

Profilers (``--profile TOOL``): after the warm-up the tool attaches to the
server pid, the server idles ``--attach-delay`` s, one window is measured
(its figures are perturbed, and flagged so), the tool stops with SIGINT, its
output goes to ``--profile-dir`` and is summarised:

  pyspy       py-spy record (Python frames; time in a C call such as
              socket.send goes to the Python line that made it)
  pyspynative py-spy record --native (C frames too; its samples land almost
              only in syscalls, so use perfrecord for user vs kernel)
  strace      strace -c -f (syscalls per request, by name; slows the server a lot)
  perfsys     perf stat on the syscall tracepoints (syscalls per request,
              counted in the kernel: little perturbation)
  perfstat    perf stat -e task-clock,context-switches,cpu-migrations,page-faults
  perfrecord  perf record -e cpu-clock -g (kernel vs libpython vs ... by DSO)

A model may be a variant, MODEL:ARG[:ARG...]: ARGs that start with '-' are
added to its `iomodels serve` line, NAME=VALUE sets an environment variable of
its server (io_uring:--uring-sends=plain).  Output fits 120 columns.

Examples:
  .venv/bin/python bench/echo_bench.py                     # epoll,asyncio,uvloop x3
  .venv/bin/python bench/echo_bench.py --models epoll,poll,select,threads \\
      --duration 3 --repeats 3 --json /tmp/bench.json
  .venv/bin/python bench/echo_bench.py --models epoll,asyncio,uvloop --repeats 1 \\
      --profile strace --profile-dir /tmp/prof
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # measure this tree, installed or not
from iomodels import models  # noqa: E402 (the path above)
from iomodels.harness import ArgParser, ServerProcess, ServerStartError, machine, session_group  # noqa: E402
from iomodels.harness.machine import summary  # noqa: E402
from iomodels.harness.process import serve_command  # noqa: E402
from iomodels.loadgen import LoadConfig, LoadGenerator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profilers  # noqa: E402 (bench/profilers.py)

HOST = "127.0.0.1"  # loopback only, on purpose
WIDTH = 120  # columns of everything printed
DRAIN_S = 2.0  # after a phase: every request in flight answered
TIMEOUT_S = 5.0  # a reply later than this is an error, not a slow request


@dataclass
class Variant:
    """One column of the comparison: a model with its extra serve flags and environment."""

    name: str  # as given: "io_uring:--uring-sends=plain"
    model: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        model, *parts = text.split(":")
        env = dict(p.split("=", 1) for p in parts if "=" in p and not p.startswith("-"))
        args = [p for p in parts if p.startswith("-") or "=" not in p]
        return cls(text, model, args, env)


# --------------------------------------------------------------------------
# what the server used, finer than compare's total


@dataclass
class Counters:
    cpu_s: float  # exact: schedstat runtime over the session (harness)
    user_ticks: int  # utime (+ cutime) over the session, ticks
    all_ticks: int  # utime + stime (+ cutime + cstime), ticks
    vcsw: int  # voluntary context switches of every thread of the session

    @classmethod
    def read(cls, server: ServerProcess) -> Counters:
        user = total = vcsw = 0
        for pid, fields in session_group(server.pgid):
            utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
            user += utime + cutime
            total += utime + stime + cutime + cstime
            vcsw += _voluntary_switches(pid)
        return cls(server.cpu_seconds(), user, total, vcsw)


def _voluntary_switches(pid: int) -> int:
    """Summed over the process's threads: /proc/PID/status counts the main thread only."""
    n = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        n += int(line.split()[1])
                        break
        except OSError:
            continue  # the thread ended meanwhile
    return n


def cpu_ticks() -> dict[int, list[int]]:
    """Per-CPU /proc/stat jiffies: user nice system idle iowait irq softirq steal."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                out[int(m.group(1))] = [int(x) for x in m.group(2).split()[:8]]
    return out


# --------------------------------------------------------------------------
# one cell: one server, one warm-up, one measured window


def start_server(args: argparse.Namespace, variant: Variant, round_no: int) -> ServerProcess:
    logdir = Path(args.profile_dir or "/tmp")
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", variant.name)
    command = serve_command(variant.model, "echo", HOST, 0, "warning", [*variant.args, *args.server_arg])
    command[0] = args.python  # the interpreter under test
    return ServerProcess(
        variant.model,
        command=command,
        cpu=args.server_cpu,
        env=variant.env,
        log_path=logdir / f"echo_bench-{slug}-{os.getpid()}-{round_no}.log",
    ).start()


def run_cell(args: argparse.Namespace, variant: Variant, round_no: int) -> dict[str, Any]:
    result: dict[str, Any] = {"model": variant.name, "round": round_no}
    config = LoadConfig(
        host=HOST,
        port=0,
        connections=args.connections,
        msize=args.msize,
        workers=args.workers,
        timeout_s=TIMEOUT_S,
        cpus=frozenset({args.client_cpu}) if args.client_cpu is not None else None,
        prime=True,  # every connection answered once before any clock starts
    )
    with start_server(args, variant, round_no) as server:
        config.port = server.port
        with LoadGenerator(config) as gen:
            gen.setup(timeout_s=30.0)
            if args.warmup > 0:
                gen.run(args.warmup, record=False, drain_s=DRAIN_S)
            tool = profilers.attach(args, variant.name, server.pid) if args.profile else None
            try:
                before, st0 = Counters.read(server), cpu_ticks()
                window = gen.run(args.duration, record=True, drain_s=DRAIN_S)
                after, st1 = Counters.read(server), cpu_ticks()
            except BaseException:
                if tool is not None:
                    tool.kill()
                raise
            if tool is not None:
                result["profile"] = tool.detach(window["requests"])
        result.update(figures(args, window, before, after, st0, st1))
    return result


def figures(
    args: argparse.Namespace,
    window: dict[str, Any],
    before: Counters,
    after: Counters,
    st0: dict[int, list[int]],
    st1: dict[int, list[int]],
) -> dict[str, Any]:
    req = window["requests"]
    wall = window["window_s"] or window["wall_s"]
    cpu = after.cpu_s - before.cpu_s
    ticks = after.all_ticks - before.all_ticks
    # user time: the tick-sampled share of user mode, applied to the exact runtime
    usr = cpu * (after.user_ticks - before.user_ticks) / ticks if ticks > 0 else 0.0

    def per_req(seconds: float) -> float | None:
        return round(1e6 * seconds / req, 2) if req else None

    out: dict[str, Any] = {
        "requests": req,
        "req_per_s": window["req_per_s"],
        "window_s": round(wall, 3),
        "srv_cpu_pct": round(100.0 * cpu / wall, 1) if wall else None,
        "srv_us_per_req": per_req(cpu),
        "srv_user_us_per_req": per_req(usr),
        "srv_sys_us_per_req": per_req(cpu - usr),
        "srv_vcsw_per_req": round((after.vcsw - before.vcsw) / req, 3) if req else None,
        "p50_us": window["latency"]["p50_us"],
        "p99_us": window["latency"]["p99_us"],
        "gen_cpu_pct": window["gen_cpu_pct"],
        "errors_total": window["errors_total"],
        "errors": {k: n for k, n in window["errors"].items() if n},
        "perturbed_by": args.profile,
    }
    cpu_no = args.server_cpu
    if cpu_no is not None and cpu_no in st0 and cpu_no in st1:
        hz = os.sysconf("SC_CLK_TCK")
        d = [b - a for a, b in zip(st0[cpu_no], st1[cpu_no], strict=True)]
        busy = (sum(d) - d[3] - d[4]) / hz  # everything but idle and iowait
        out["srv_cpu_softirq_us_per_req"] = per_req(d[6] / hz)
        # rough: the two clocks (ticks, schedstat) differ by a few %
        out["srv_cpu_foreign_pct"] = round(100.0 * (busy - cpu) / wall, 1) if wall else None
    return out


# --------------------------------------------------------------------------
# 120 columns


COLS = [  # header, key, format, width
    ("req/s", "req_per_s", "{:.0f}", 7),
    ("CPU%", "srv_cpu_pct", "{:.0f}", 4),
    ("us/req", "srv_us_per_req", "{:.2f}", 6),
    ("usr", "srv_user_us_per_req", "{:.2f}", 5),
    ("sys", "srv_sys_us_per_req", "{:.2f}", 5),
    ("vcsw", "srv_vcsw_per_req", "{:.3f}", 5),
    ("sirq", "srv_cpu_softirq_us_per_req", "{:.2f}", 5),
    ("frgn%", "srv_cpu_foreign_pct", "{:.0f}", 5),
    ("p50", "p50_us", "{:.0f}", 6),
    ("p99", "p99_us", "{:.0f}", 6),
    ("gen%", "gen_cpu_pct", "{:.0f}", 4),
    ("err", "errors_total", "{:.0f}", 4),
]
NAME_WIDTH = 28  # model or variant; longer names are cut (the JSON has them whole)


def fit(text: str) -> str:
    """One line of at most WIDTH columns."""
    line = text.split("\n", 1)[0]
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def short_error(exc: Exception) -> str:
    """What went wrong, in the words that say why: a server that did not start
    is its last log line (the JSON keeps the whole message)."""
    if isinstance(exc, ServerStartError):
        return f"{exc.what}: {exc.log_tail[-1] if exc.log_tail else 'no log'}"
    return f"{type(exc).__name__}: {exc}"


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _name(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def row(first: str, values: dict[str, Any], extra: list[tuple[str, int]] = ()) -> str:
    cells = [f"{_name(first):<{NAME_WIDTH}}"]
    cells += [f"{_cell(values.get(key), fmt):>{w}}" for _, key, fmt, w in COLS]
    cells += [f"{text:>{w}}" for text, w in extra]
    return " ".join(cells)


def header(extra: list[tuple[str, int]] = ()) -> str:
    cells = [f"{'model':<{NAME_WIDTH}}", *(f"{h:>{w}}" for h, _, _, w in COLS)]
    return " ".join(cells + [f"{h:>{w}}" for h, w in extra])


def medians(names: list[str], cells: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    med: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [c for c in cells if c["model"] == name and "error" not in c]
        if not mine:
            continue
        med[name] = {"rounds": len(mine)}
        for _, key, _, _ in COLS:
            values = [c[key] for c in mine if c.get(key) is not None]
            med[name][key] = statistics.median(values) if values else None
    return med


def median_table(med: dict[str, dict[str, Any]]) -> str:
    base = med.get("epoll", {}).get("srv_us_per_req")
    extra_head = [("xepoll", 6), ("n", 2)]
    lines = [header(extra_head)]
    for name, v in med.items():
        rel = f"{v['srv_us_per_req'] / base:.2f}" if base and v.get("srv_us_per_req") else "-"
        lines.append(row(name, v, [(rel, 6), (str(v["rounds"]), 2)]))
    return "\n".join(lines)


def print_profile(profile: Any) -> None:
    for line in profilers.describe(profile):
        print(fit("  " + line))


# --------------------------------------------------------------------------


def build_parser() -> ArgParser:
    doc = __doc__ or ""
    ap = ArgParser(
        prog="bench/echo_bench.py",
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--models",
        default="epoll,asyncio,uvloop",
        help="comma-separated models or variants MODEL:ARG[:ARG...] (default epoll,asyncio,uvloop)",
    )
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (default 5)")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds of load first (default 1)")
    ap.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    ap.add_argument("--msize", type=int, default=1024, help="bytes per request (default 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every model (default 3)")
    ap.add_argument("--workers", type=int, default=1, help="load generator processes (default 1)")
    ap.add_argument("--server-cpu", type=int, default=0, help="CPU of the server; -1: no pinning (default 0)")
    ap.add_argument(
        "--client-cpu", type=int, default=1, help="CPU of the generator; -1: no pinning (default 1)"
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter of the server (default: this one)")
    ap.add_argument(
        "--server-arg", action="append", default=[], help="extra 'iomodels serve' argument (repeatable)"
    )
    ap.add_argument("--json", metavar="FILE", help="write the machine, every cell and the medians as JSON")
    ap.add_argument(
        "--profile", choices=profilers.TOOLS, help="attach this tool to the server for the window"
    )
    ap.add_argument("--profile-dir", default=None, help="profiles and server logs (default /tmp)")
    ap.add_argument("--attach-delay", type=float, default=1.5, help="idle s after attaching (default 1.5)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy / perf sampling rate, Hz (default 250)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    variants = [Variant.parse(m.strip()) for m in args.models.split(",") if m.strip()]
    if args.connections < args.workers or args.workers < 1 or args.duration <= 0 or args.msize < 1:
        ap.error("need workers >= 1, connections >= workers, duration > 0, msize >= 1")
    if not variants:
        ap.error("no model given")
    unknown = [v.model for v in variants if v.model not in models.names()]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(models.names())}")
    args.server_cpu = None if args.server_cpu < 0 else args.server_cpu
    args.client_cpu = None if args.client_cpu < 0 else args.client_cpu
    if args.profile:
        args.profile_dir = args.profile_dir or "/tmp/echo_bench_profiles"
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})  # this orchestrating process too

    info = machine()
    settings = (
        f"connections={args.connections} msize={args.msize} duration={args.duration}s "
        f"warmup={args.warmup}s repeats={args.repeats} workers={args.workers} "
        f"server-cpu={args.server_cpu} client-cpu={args.client_cpu}"
    )
    for line in (
        summary(info),
        f"git {info['git_head']}, src sha256 {info['src_sha256']}, load {info['loadavg_at_start'][0]}",
        settings + (f" profile={args.profile}" if args.profile else ""),
    ):
        print(fit(f"# {line}"))
    runnable = []
    for v in variants:  # an unavailable model is one line, once
        ok, reason = models.available(v.model)
        if ok:
            runnable.append(v)
        else:
            print(fit(f"{_name(v.name):<{NAME_WIDTH}} unavailable: {reason}"))
    cells: list[dict[str, Any]] = []
    if runnable:
        print(header([("rnd", 3)]), flush=True)
    for r in range(args.repeats):
        k = r % len(runnable) if runnable else 0
        for variant in runnable[k:] + runnable[:k]:  # rotate: no model always goes first
            try:
                cell = run_cell(args, variant, r)
            except Exception as exc:  # one broken model must not stop the others
                cell = {"model": variant.name, "round": r, "error": f"{type(exc).__name__}: {exc}"}
                print(fit(f"{_name(variant.name):<{NAME_WIDTH}} round {r}: {short_error(exc)}"), flush=True)
            else:
                print(row(variant.name, cell, [(str(r), 3)]), flush=True)
                if "profile" in cell:
                    print_profile(cell["profile"])
            cells.append(cell)
    med = medians([v.name for v in runnable], cells)
    if med:
        print(
            f"\nmedians over {args.repeats} round(s)"
            + (" (PERTURBED by the profiler)" if args.profile else "")
        )
        print(median_table(med))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "cells": cells, "medians": med}, f, indent=1)
        print(fit(f"wrote {args.json}"))
    return 0 if cells and all("error" not in c for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
