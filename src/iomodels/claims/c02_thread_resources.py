# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 2: a thread or a process per connection "seriously occupies system resources".

Experiment: ``threads``, ``processes`` and ``epoll``, one server each, closed
loop at CONNECTIONS (1 KiB echo).  Per window: the server's PSS (memory with
shared pages divided among forks, so ``processes`` is not counted N times),
threads and processes, and CPU microseconds per request (the figure that
survives a shared machine, BENCHMARKS.md).  Per-connection memory is the
slope between the smallest and the largest size.
"""

from __future__ import annotations

from typing import Any

from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, PARTLY, Verdict, not_measurable, ratio, unmeasurable
from iomodels.claims.lab import Lab, sweep

ID = "2"
TITLE = "a thread/process per connection: resources"
QUOTE_ZH = (
    "开启多进程或都线程的方式，在遇到要同时响应成百上千路的连接请求，则无论多线程还是多进程都会严重占据系统资源，"
    "降低系统对外界响应效率，而且线程与进程本身也更容易进入假死状态。"
)
QUOTE_EN = (
    "With many processes or threads, when hundreds or thousands of connections must be answered at "
    "once, both seriously occupy system resources and lower the system's responsiveness; threads and "
    "processes themselves also hang more easily."
)
MEASURES = "memory (PSS) per connection, threads/processes, CPU µs per request: threads, processes vs epoll"

MODELS = ("threads", "processes", "epoll")
BASELINE = "epoll"
MAX_PROCESSES = 2000  # as compare.Settings.max_processes: a shared machine; 5000 forks is ~7 GB of PSS

# verdict thresholds (at the largest size every model ran)
MEM_FACTOR = 3.0  # memory per connection at least this times epoll's
CPU_FACTOR = 1.3  # CPU per request at least this times epoll's


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable(*MODELS)
    if why:
        return not_measurable(why)
    sizes = [10, 100, 1000] if quick else [10, 100, 1000, 5000]
    duration = 1.0 if quick else 3.0
    out: dict[str, Any] = {"sizes": sizes, "models": {}}
    for model in MODELS:
        run_sizes = [n for n in sizes if model != "processes" or n <= MAX_PROCESSES]
        rows = sweep(lab, model, [(n, 0) for n in run_sizes], duration)
        rows += [
            {"active": n, "idle": 0, "status": "skipped", "reason": f"more than {MAX_PROCESSES} forks"}
            for n in sizes
            if n not in run_sizes
        ]
        out["models"][model] = rows
    return out


def summarize(numbers: dict[str, Any]) -> dict[str, Any]:
    """Per model at the largest common size: KiB/connection, µs/request, threads, processes."""
    ok = {
        m: {r["active"]: r for r in rows if r.get("status") == "ok"} for m, rows in numbers["models"].items()
    }
    common = sorted(set.intersection(*(set(v) for v in ok.values()))) if ok else []
    if len(common) < 2:
        return {}
    lo, hi = common[0], common[-1]
    out: dict[str, Any] = {"at": hi}
    for m, rows in ok.items():
        a, b = rows[lo], rows[hi]
        mem_a = a.get("srv_pss_mib") or a["srv_rss_mib"]
        mem_b = b.get("srv_pss_mib") or b["srv_rss_mib"]
        out[m] = {
            "kib_per_conn": round(1024 * (mem_b - mem_a) / (hi - lo), 1),
            "us_per_req": b["srv_us_per_req"],
            "threads": b["srv_threads"],
            "procs": b["srv_procs"],
            "mem_mib": mem_b,
        }
    return out


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    s = summarize(numbers)
    if not s:
        return Verdict("not measurable", "-", "fewer than two sizes ran on every model")
    base = s[BASELINE]
    heavy = [m for m in MODELS if m != BASELINE]
    mem = {m: ratio(s[m]["kib_per_conn"], max(base["kib_per_conn"], 0.1)) for m in heavy}
    cpu = {m: ratio(s[m]["us_per_req"], base["us_per_req"]) for m in heavy}
    key = f"at {s['at']} connections: " + "; ".join(
        f"{m} {s[m]['kib_per_conn']:.0f} KiB/conn, {s[m]['us_per_req']} µs/req, "
        f"{s[m]['threads']} threads, {s[m]['procs']} procs"
        for m in MODELS
    )
    mem_ok = all(x is not None and x >= MEM_FACTOR for x in mem.values())
    cpu_ok = all(x is not None and x >= CPU_FACTOR for x in cpu.values())
    rule = (
        f"Thresholds: memory per connection >= {MEM_FACTOR:g}x epoll's and CPU per request >= "
        f"{CPU_FACTOR:g}x epoll's, for both threads and processes. Ratios: memory "
        + ", ".join(f"{m} {mem[m]:.1f}x" for m in heavy if mem[m] is not None)
        + "; CPU "
        + ", ".join(f"{m} {cpu[m]:.2f}x" for m in heavy if cpu[m] is not None)
        + "."
    )
    if mem_ok and cpu_ok:
        return Verdict(HOLDS, key, "Both memory and CPU. " + rule)
    if mem_ok or cpu_ok or any((x or 0) >= MEM_FACTOR for x in mem.values()):
        return Verdict(PARTLY, key, "Only part of the resources, or only one of the two models. " + rule)
    return Verdict(DOES_NOT_HOLD, key, rule)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for model, rows in numbers["models"].items():
        ok = [r for r in rows if r.get("status") == "ok"]
        xs = [r["active"] for r in ok]
        axes[0].plot(xs, [r.get("srv_pss_mib") or r["srv_rss_mib"] for r in ok], "o-", label=model)
        axes[1].plot(xs, [r["srv_us_per_req"] for r in ok], "o-", label=model)
        axes[2].plot(xs, [r["srv_threads"] + r["srv_procs"] - 1 for r in ok], "o-", label=model)
    for ax, label in zip(
        axes, ["server PSS (MiB)", "server CPU µs / request", "threads + processes"], strict=True
    ):
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Claim 2: a thread or a process per connection")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
