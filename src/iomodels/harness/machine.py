"""The one description of the machine a measurement ran on, and of the code it ran.

compare's results.json, claims.json and bench/ all record it, so that a
figure can be traced back to a CPU, a kernel, a Python and a source tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import resource
import subprocess
from typing import Any

import iomodels
from iomodels.harness.process import SRC_DIR

OPTIONAL_DISTS = ("hdrhistogram", "matplotlib", "rich", "uvloop", "numpy")


def source_digest() -> str:
    """12 hex digits of sha256 over the package's .py files: the code actually measured,
    committed or not."""
    digest = hashlib.sha256()
    for path in sorted((SRC_DIR / "iomodels").rglob("*.py")):
        digest.update(str(path.relative_to(SRC_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def git_head() -> str:
    """The short commit of the source tree, or "" outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "-C", str(SRC_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "mem_total_mib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "clk_tck": os.sysconf("SC_CLK_TCK"),
        "git_head": git_head(),
        "src_sha256": source_digest(),
    }


def split_cpus() -> tuple[int | None, list[int] | None]:
    """(server CPU, generator CPUs) out of the CPUs this process may use: the first
    for the server, the rest for the load, so the two never share a CPU.  With one
    CPU no pinning can separate them: (None, None), and the report shows nproc."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) >= 2:
        return mine[0], mine[1:]
    return None, None


def summary(info: dict[str, Any]) -> str:
    """One line for a table's caption: '2 CPUs (...), Linux 6.x, Python 3.11.7'."""
    return (
        f"{info['nproc']} CPUs ({info['cpu_model'] or 'unknown CPU'}), Linux {info['kernel']}, "
        f"Python {info['python']}"
    )


def versions() -> dict[str, str | None]:
    import importlib.metadata  # ~40 ms: not on every `iomodels serve` start

    out: dict[str, str | None] = {"iomodels": iomodels.__version__}
    for dist in OPTIONAL_DISTS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def busy_ticks() -> int:
    """Busy jiffies of the whole machine (/proc/stat 'cpu': all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4]
