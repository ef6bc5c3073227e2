"""The profilers bench/echo_bench.py attaches to a server for one measured window.

``attach(args, name, pid)`` starts the tool on the server's pid and lets the
server idle ``args.attach_delay`` seconds (the tool settles, no request is
lost); ``detach(requests)`` stops it with SIGINT, as Ctrl-C, and returns a
summary of its output; ``describe(summary)`` gives the lines to print.
The tools: see TOOLS and echo_bench.py's help.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

TOOLS = ("pyspy", "pyspynative", "strace", "perfsys", "perfstat", "perfrecord")
EXTENSION = {"pyspy": "txt", "pyspynative": "txt", "strace": "txt", "perfsys": "csv", "perfstat": "txt"}
SYSCALLS = (  # counted one by one by perfsys, besides the total
    "recvfrom", "sendto", "epoll_wait", "epoll_pwait", "epoll_ctl", "read", "write", "readv",
    "writev", "recvmsg", "sendmsg", "accept4", "getpid", "futex", "io_uring_enter",
)  # fmt: skip
STOP_TIMEOUT_S = 60.0  # perf record may take a while to write its file


def command(tool: str, pid: int, out: Path, rate: int) -> list[str]:
    if tool in ("pyspy", "pyspynative"):
        exe = Path(sys.executable).with_name("py-spy")
        native = ["--native"] if tool == "pyspynative" else []
        pyspy = str(exe) if exe.exists() else "py-spy"
        return [pyspy, "record", *native, "-r", str(rate), "-f", "raw", "-o", str(out), "-p", str(pid)]
    if tool == "strace":
        return ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)]
    if tool == "perfsys":  # syscall tracepoints, counted in the kernel: cheap, unlike strace
        events = ",".join(["raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{n}" for n in SYSCALLS)])
        return ["perf", "stat", "-x", ",", "-e", events, "-o", str(out), "-p", str(pid)]
    if tool == "perfstat":
        events = "task-clock,context-switches,cpu-migrations,page-faults"
        return ["perf", "stat", "-e", events, "-o", str(out), "-p", str(pid)]
    if tool == "perfrecord":
        return ["perf", "record", "-e", "cpu-clock", "-F", str(rate), "-g", "-o", str(out), "-p", str(pid)]
    raise ValueError(f"unknown profiler {tool!r}; choose from {', '.join(TOOLS)}")


class Attached:
    """One profiler process watching one server."""

    def __init__(self, tool: str, out: Path, argv: list[str], attach_delay_s: float) -> None:
        self.tool = tool
        self.out = out
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise RuntimeError(f"{tool}: {argv[0]} is not installed") from None
        time.sleep(attach_delay_s)  # the server is idle: nothing is lost
        if self.proc.poll() is not None:
            err = self._stderr()
            raise RuntimeError(f"{tool} exited at once: {err[-300:]}")

    def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()

    def detach(self, requests: int) -> dict[str, Any]:
        """Stop the tool (SIGINT) and summarise what it wrote over ``requests`` requests."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        summary: dict[str, Any] = {"tool": self.tool, "file": str(self.out)}
        if not self.out.exists():
            summary["error"] = f"no output; {self.tool} said: {err.decode(errors='replace')[-300:]}"
            return summary
        if self.tool in ("pyspy", "pyspynative"):
            summary.update(summarize_pyspy(self.out))
        elif self.tool == "strace":
            summary.update(summarize_strace(self.out, requests))
        elif self.tool == "perfsys":
            summary.update(summarize_perfsys(self.out, requests))
        elif self.tool == "perfstat":
            summary["text"] = self.out.read_text()
        elif self.tool == "perfrecord":
            summary.update(summarize_perfrecord(self.out))
        return summary


def attach(args: argparse.Namespace, name: str, pid: int) -> Attached:
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)
    out = Path(args.profile_dir) / f"{args.profile}-{slug}.{EXTENSION.get(args.profile, 'data')}"
    return Attached(args.profile, out, command(args.profile, pid, out, args.rate), args.attach_delay)


# --------------------------------------------------------------------------
# summaries


def summarize_pyspy(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and total sample shares per function from py-spy's collapsed stacks."""
    self_n: collections.Counter[str] = collections.Counter()
    total_n: collections.Counter[str] = collections.Counter()
    n = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        n += c
        frames = [_short(f) for f in stack.split(";")]
        self_n[frames[-1]] += c
        for f in set(frames):
            total_n[f] += c

    def pct(k: int) -> float:
        return round(100.0 * k / n, 1) if n else 0.0

    return {
        "samples": n,
        "self": [(f, pct(c)) for f, c in self_n.most_common(top)],
        "total": [(f, pct(c)) for f, c in total_n.most_common(top + 10)],
    }


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"; native frames keep their name
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    return f"{m.group(1)} ({os.path.basename(m.group(2))})" if m else frame


def _per_request(calls: dict[str, int], total: int, requests: int) -> dict[str, Any]:
    ranked = sorted(((k, v) for k, v in calls.items() if v), key=lambda kv: -kv[1])
    return {
        "requests": requests,
        "syscalls": total,
        "per_request": round(total / requests, 3) if requests else None,
        "by_name": {k: round(v / requests, 3) for k, v in ranked} if requests else {},
    }


def summarize_strace(path: Path, requests: int) -> dict[str, Any]:
    calls = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                pass
    return _per_request(calls, sum(calls.values()), requests)


def summarize_perfsys(path: Path, requests: int) -> dict[str, Any]:
    counts = {}
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[0].strip().isdigit():
            name = parts[2].split(":")[-1].replace("sys_enter_", "")
            counts["ALL" if name == "sys_enter" else name] = int(parts[0])
    total = counts.pop("ALL", sum(counts.values()))
    return _per_request(counts, total, requests)


def summarize_perfrecord(path: Path) -> dict[str, Any]:
    def report(sort: str, keep: int) -> list[str]:
        argv = ["perf", "report", "-i", str(path), "--no-children", "--sort", sort]
        out = subprocess.run(
            [*argv, "--stdio", "-q", "-g", "none"], capture_output=True, text=True, timeout=120
        ).stdout
        return [ln.strip() for ln in out.splitlines() if ln.strip()][:keep]

    try:
        return {"by_dso": report("dso", 10), "top_symbols": report("dso,sym", 25)}
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"perf report: {exc}"}


def describe(summary: dict[str, Any]) -> list[str]:
    """The lines echo_bench prints under a profiled cell (the caller cuts them to width)."""
    tool = summary.get("tool", "?")
    if "error" in summary:
        return [f"{tool}: {summary['error']}"]
    if "self" in summary:
        lines = [f"py-spy: {summary['samples']} samples; self %:"]
        lines += [f"  {p:5.1f}  {f}" for f, p in summary["self"]]
        lines += ["total (inclusive) %:"] + [f"  {p:5.1f}  {f}" for f, p in summary["total"]]
        return lines
    if "per_request" in summary:
        head = f"{tool}: {summary['syscalls']} syscalls / {summary['requests']} requests"
        names = ", ".join(f"{k} {v}" for k, v in summary["by_name"].items())
        body = textwrap.wrap(names, 110, initial_indent="  ", subsequent_indent="  ")
        return [f"{head} = {summary['per_request']} per request:", *body]
    if "by_dso" in summary:
        return ["perf record, self % by DSO:", *summary["by_dso"], "top symbols:", *summary["top_symbols"]]
    if "text" in summary:
        return [ln for ln in summary["text"].splitlines() if ln.strip()]
    return []
