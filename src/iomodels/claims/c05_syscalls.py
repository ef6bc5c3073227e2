# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 5: multiplexing needs two system calls per read where blocking IO needs one.

Experiment, part 1: for ``threads`` (blocking IO), ``select`` and ``epoll``,
one connection, REQUESTS sequential 64-byte echo requests while ``strace -c
-f -p PID`` counts every system call of the server (all its threads): calls
per request, and which.  strace slows the server a lot, so it gives counts,
not times.  Part 2, without strace: one closed-loop connection per model
(one request in flight): median latency and requests/s.
"""

from __future__ import annotations

from typing import Any

from iomodels.claims.base import (
    DOES_NOT_HOLD,
    HOLDS,
    PARTLY,
    Verdict,
    fmt_us,
    not_measurable,
    unmeasurable,
)
from iomodels.claims.lab import STRACE, Lab, parse_strace_summary, traced_requests

ID = "5"
TITLE = "multiplexing: two syscalls where blocking needs one"
QUOTE_ZH = (
    "和阻塞IO模型相比，多路复用IO模型在整个机制上可能还要更差一点，因为它需要使用两个系统调用(select和recvfrom)，"
    "而阻塞IO只调用了一个系统调用(recvfrom)。但是，用select的优势在于它可以同时处理多个连接。"
)
QUOTE_EN = (
    "Compared with blocking IO, the multiplexing model may even be a bit worse as a mechanism, because "
    "it needs two system calls (select and recvfrom) where blocking IO makes only one (recvfrom). "
    "The advantage of select is that it can handle many connections at once."
)
MEASURES = (
    "syscalls per request (strace -c -f, one connection) and single-connection latency: "
    "threads, select, epoll"
)

MODELS = ("threads", "select", "epoll")
BLOCKING_MODEL = "threads"
WAIT_CALLS = {"select": ("select", "pselect6"), "epoll": ("epoll_wait", "epoll_pwait", "epoll_pwait2")}

# verdict thresholds
EXTRA_CALLS = 0.5  # multiplexing makes at least this many more syscalls per request
WORSE = 1.05  # p50 at least 5 % above the blocking model's: "worse for one connection"


def _strace_counts(lab: Lab, model: str, requests: int) -> dict[str, Any]:
    text = traced_requests(lab, model, requests, ["-c"], f"strace-c-{model}.txt")
    calls = parse_strace_summary(text)
    total = sum(calls.values())
    per_req = {name: round(n / requests, 3) for name, n in sorted(calls.items(), key=lambda kv: -kv[1])}
    return {
        "requests": requests,
        "total_calls": total,
        "per_request": round(total / requests, 3),
        "by_call": per_req,
    }


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable(*MODELS)
    if why:
        return not_measurable(why)
    requests = 200 if quick else 1000
    load_s = 1.5 if quick else 4.0
    out: dict[str, Any] = {"requests": requests, "syscalls": {}, "latency": {}}
    if STRACE is None:
        out["syscalls_not_measurable"] = "strace is not installed"
    else:
        for model in MODELS:
            lab.progress(f"{model}: strace -c on {requests} requests")
            out["syscalls"][model] = _strace_counts(lab, model, requests)
    for model in MODELS:
        lab.progress(f"{model}: one connection, closed loop")
        with lab.server(model) as server:
            cell = lab.load(server, connections=1, duration_s=load_s, msize=64)
        out["latency"][model] = {
            "req_per_s": cell["req_per_s"],
            "p50_us": cell["latency"]["p50_us"],
            "p99_us": cell["latency"]["p99_us"],
            "srv_us_per_req": cell["srv_us_per_req"],
        }
    return out


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    lat = numbers["latency"]
    base_p50 = lat[BLOCKING_MODEL]["p50_us"]
    mux = [m for m in MODELS if m != BLOCKING_MODEL]
    worse = [
        m for m in mux if lat[m]["p50_us"] is not None and base_p50 and lat[m]["p50_us"] >= WORSE * base_p50
    ]
    lat_key = ", ".join(f"{m} {fmt_us(lat[m]['p50_us'])}" for m in MODELS)
    sc = numbers.get("syscalls") or {}
    if not sc:
        why = numbers.get("syscalls_not_measurable", "no syscall counts")
        return Verdict(
            PARTLY if worse else DOES_NOT_HOLD,
            f"p50 {lat_key}; syscalls not counted ({why})",
            "Only the latency part could be measured: "
            + ("multiplexing was slower." if worse else "it was not slower."),
        )
    base = sc[BLOCKING_MODEL]["per_request"]
    extra = {m: sc[m]["per_request"] - base for m in mux}
    more_calls = all(x >= EXTRA_CALLS for x in extra.values())
    key = (
        "syscalls/request "
        + ", ".join(f"{m} {sc[m]['per_request']:.2f}" for m in MODELS)
        + f"; p50 {lat_key}"
    )
    rule = (
        f"Two-calls part: select and epoll make >= {EXTRA_CALLS} more syscalls per request than "
        f"`{BLOCKING_MODEL}`; latency part: their single-connection p50 >= {WORSE:g}x `{BLOCKING_MODEL}`'s."
    )
    if more_calls and len(worse) == len(mux):
        return Verdict(HOLDS, key, "Both parts hold. " + rule)
    if more_calls or worse:
        part = "the two-calls part holds" if more_calls else "only the latency part holds"
        detail = "" if not worse or len(worse) == len(mux) else f" (slower: {', '.join(worse)})"
        return Verdict(PARTLY, key, f"Partly: {part}{detail}. " + rule)
    return Verdict(DOES_NOT_HOLD, key, "Neither part holds. " + rule)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    sc = numbers.get("syscalls") or {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    if sc:
        names = sorted(
            {n for m in sc.values() for n in m["by_call"]},
            key=lambda n: -max(sc[m]["by_call"].get(n, 0) for m in sc),
        )[:6]
        bottom = [0.0] * len(sc)
        for name in names:
            vals = [sc[m]["by_call"].get(name, 0) for m in sc]
            axes[0].bar(list(sc), vals, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        axes[0].set_ylabel("syscalls per request (strace -c -f)")
        axes[0].legend(fontsize=7)
    else:
        axes[0].text(0.5, 0.5, "strace missing", ha="center")
    lat = numbers["latency"]
    axes[1].bar(list(lat), [(lat[m]["p50_us"] or 0) for m in lat], color="#2980b9")
    axes[1].set_ylabel("p50 latency, 1 connection (µs)")
    fig.suptitle("Claim 5: system calls per request and single-connection latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
