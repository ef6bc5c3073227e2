# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 2: a thread or a process per connection "seriously occupies system resources".

Experiment: ``threads``, ``processes`` and ``epoll``, one server each, closed
loop at CONNECTIONS (1 KiB echo).  Per window: the server's PSS (memory with
shared pages divided among forks, so ``processes`` is not counted N times),
threads and processes, and CPU microseconds per request (the figure that
survives a shared machine, BENCHMARKS.md).  Per-connection memory is the
slope between the smallest and the largest size, within each repeat; the
models' sweeps are repeated, interleaved.
"""

from __future__ import annotations

from typing import Any

from iomodels.claims import figures
from iomodels.claims.base import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURABLE,
    PARTLY,
    UNDECIDED,
    Verdict,
    above,
    closest,
    compare,
    decide,
    not_measurable,
    spread,
    undecided_text,
    unmeasurable,
)
from iomodels.claims.lab import Lab, repeated_sweep, samples

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
EPOLL_KIB_FLOOR = 0.1  # KiB: epoll's per-connection memory is compared as at least this


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable(*MODELS)
    if why:
        return not_measurable(why)
    # the verdict reads the smallest and the largest size only: --quick measures just those
    sizes = [10, 1000] if quick else [10, 100, 1000, 5000]
    duration = 0.6 if quick else 2.0
    plans = {m: (m, [(n, 0) for n in sizes if m != "processes" or n <= MAX_PROCESSES], []) for m in MODELS}
    out: dict[str, Any] = {"sizes": sizes, "repeats": lab.repeats, "models": {}}
    for model, rows in repeated_sweep(lab, plans, duration).items():
        rows += [
            {"active": n, "idle": 0, "status": "skipped", "reason": f"more than {MAX_PROCESSES} forks"}
            for n in sizes
            if model == "processes" and n > MAX_PROCESSES
        ]
        out["models"][model] = rows
    return out


def _mem(r: dict[str, Any]) -> float | None:
    return r.get("srv_pss_mib") or r.get("srv_rss_mib")


def summarize(numbers: dict[str, Any]) -> dict[str, Any]:
    """Per model at the largest common size, one value per repeat: KiB/connection
    (the slope from the smallest size, within the same repeat and server), µs/request,
    threads, processes."""
    ok = {
        m: {r["active"]: r for r in rows if r.get("status") == "ok"} for m, rows in numbers["models"].items()
    }
    common = sorted(set.intersection(*(set(v) for v in ok.values()))) if ok else []
    if len(common) < 2:
        return {}
    lo, hi = common[0], common[-1]
    out: dict[str, Any] = {"at": hi}
    for m, rows in ok.items():
        a, b = rows[lo].get("repeats", [rows[lo]]), rows[hi].get("repeats", [rows[hi]])
        kib = [
            1024 * (_mem(y) - _mem(x)) / (hi - lo)
            for x, y in zip(a, b, strict=True)
            if x.get("status") == "ok" and y.get("status") == "ok" and _mem(x) and _mem(y)
        ]
        out[m] = {
            "kib_per_conn": kib,
            "us_per_req": samples(rows[hi], "srv_us_per_req"),
            "threads": rows[hi]["srv_threads"],
            "procs": rows[hi]["srv_procs"],
        }
    return out


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    s = summarize(numbers)
    if not s:
        return Verdict(NOT_MEASURABLE, "-", "fewer than two sizes ran on every model")
    base = s[BASELINE]
    heavy = [m for m in MODELS if m != BASELINE]
    # epoll's memory per connection is close to 0 (and may come out negative): floor it so
    # that the ratio means something
    base_kib = [max(x, EPOLL_KIB_FLOOR) for x in base["kib_per_conn"]]
    mem = {m: compare(s[m]["kib_per_conn"], base_kib, MEM_FACTOR) for m in heavy}
    cpu = {m: compare(s[m]["us_per_req"], base["us_per_req"], CPU_FACTOR) for m in heavy}
    notes = {f"{m} memory/connection against {MEM_FACTOR:g}x epoll's": mem[m] for m in heavy}
    notes |= {f"{m} CPU/request against {CPU_FACTOR:g}x epoll's": cpu[m] for m in heavy}
    parts = {k: above(c) for k, c in notes.items()}
    mem_keys = [k for k in parts if "memory" in k]
    cpu_keys = [k for k in parts if "CPU" in k]

    def rule(p: dict[str, bool]) -> str:
        mem_ok = all(p[k] for k in mem_keys)
        cpu_ok = all(p[k] for k in cpu_keys)
        if mem_ok and cpu_ok:
            return HOLDS
        if mem_ok or cpu_ok or any(p[k] for k in mem_keys):
            return PARTLY
        return DOES_NOT_HOLD

    d = decide(parts, rule)

    def kib(m: str) -> str:
        sp = spread(s[m]["kib_per_conn"])
        return sp.show(lambda x: f"{x:.0f}") if sp else "n/a"

    def us(m: str) -> str:
        sp = spread(s[m]["us_per_req"])
        return sp.show(lambda x: f"{x:.1f}") if sp else "n/a"

    key = f"at {s['at']} connections: " + "; ".join(
        f"{m} {kib(m)} KiB/conn, {us(m)} µs/req, {s[m]['threads']} threads, {s[m]['procs']} procs"
        for m in MODELS
    )
    rule_text = (
        f"Thresholds: memory per connection >= {MEM_FACTOR:g}x epoll's and CPU per request >= "
        f"{CPU_FACTOR:g}x epoll's, for both threads and processes, in every repeat (the ranges must "
        "not overlap). Median ratios: memory "
        + ", ".join(f"{m} {_ratio(mem[m]) * MEM_FACTOR:.1f}x" for m in heavy if mem[m])
        + "; CPU "
        + ", ".join(f"{m} {_ratio(cpu[m]) * CPU_FACTOR:.2f}x" for m in heavy if cpu[m])
        + "."
    )
    margin = closest(*mem.values(), *cpu.values())
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, undecided_text(d, notes) + " " + rule_text, margin)
    lead = {
        HOLDS: "Both memory and CPU. ",
        PARTLY: "Only part of the resources, or only one of the two models. ",
        DOES_NOT_HOLD: "",
    }[d.verdict]
    return Verdict(d.verdict, key, lead + rule_text, margin)


def _ratio(c) -> float:
    """median a / median (factor x b)."""
    return c.a.median / c.b.median if c.b.median else float("inf")


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for model, rows in numbers["models"].items():
        ok = [r for r in rows if r.get("status") == "ok"]
        xs = [r["active"] for r in ok]
        figures.line(axes[0], xs, [[_mem(c) for c in r.get("repeats", [r])] for r in ok], model)
        figures.line(axes[1], xs, [samples(r, "srv_us_per_req") for r in ok], model)
        axes[2].plot(xs, [r["srv_threads"] + r["srv_procs"] - 1 for r in ok], "o-", label=model)
    for ax, label in zip(
        axes, ["server PSS (MiB)", "server CPU µs / request", "threads + processes"], strict=True
    ):
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Claim 2: a thread or a process per connection (bars: min..max of repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
