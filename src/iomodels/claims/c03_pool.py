# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 3: a pool caps the damage, but far above its cap it is no better than no pool.

Experiment: ``threadpool`` (POOL_THREADS workers, the serve default) and
``threads`` (no pool) in a closed loop at connection counts below, at and
far above the pool's size (1 KiB echo).  Per window: requests/s, p99 of the
answered requests and the requests that got no answer within the timeout
(connections waiting in the backlog for a worker: each worker serves one
connection until it closes).
"""

from __future__ import annotations

from typing import Any

from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, PARTLY, Verdict, fmt_us, not_measurable, unmeasurable
from iomodels.claims.lab import Lab, sweep

ID = "3"
TITLE = "a pool far above its cap"
QUOTE_ZH = (
    "所谓“池”始终有其上限，当请求大大超过上限时，“池”构成的系统对外界的响应并不比没有池的时候效果好多少。"
    "所以使用“池”必须考虑其面临的响应规模，并根据响应规模调整“池”的大小。"
)
QUOTE_EN = (
    'A "pool" always has an upper limit; when requests greatly exceed it, a system built on the pool '
    "responds not much better than without a pool. So a pool must be sized for the load it faces."
)
MEASURES = (
    "req/s, p99 and unanswered requests of `threadpool` (8 workers) vs `threads` below/above 8 connections"
)

POOL_THREADS = 8  # `iomodels serve --threads` default
TIMEOUT_S = 1.0  # a request unanswered this long counts as not served

# verdict thresholds, at the largest connection count
BETTER_RPS = 1.10  # the pool is "better" with at least 10 % more req/s ...
# ... and no unanswered requests and a p99 no higher than no pool's


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("threadpool", "threads")
    if why:
        return not_measurable(why)
    sizes = [4, 8, 32] if quick else [4, 8, 32, 128]
    duration = 1.5 if quick else 3.0
    extra = ["--threads", str(POOL_THREADS)]
    return {
        "pool_threads": POOL_THREADS,
        "timeout_s": TIMEOUT_S,
        "sizes": sizes,
        "threadpool": sweep(
            lab, "threadpool", [(n, 0) for n in sizes], duration, extra=extra, timeout_s=TIMEOUT_S
        ),
        "threads": sweep(lab, "threads", [(n, 0) for n in sizes], duration, timeout_s=TIMEOUT_S),
    }


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    pool = {r["active"]: r for r in numbers["threadpool"] if r.get("status") == "ok"}
    nopool = {r["active"]: r for r in numbers["threads"] if r.get("status") == "ok"}
    common = sorted(set(pool) & set(nopool))
    if not common or common[-1] <= numbers["pool_threads"]:
        return Verdict("not measurable", "-", "no connection count above the pool's size was measured")
    n = common[-1]
    p, t = pool[n], nopool[n]
    rps_better = p["req_per_s"] >= BETTER_RPS * t["req_per_s"]
    tail_better = p["errors_total"] == 0 and (p["p99_us"] or 0) <= (t["p99_us"] or 0)
    key = (
        f"{n} connections on {numbers['pool_threads']} workers: pool {p['req_per_s']:.0f} req/s, "
        f"p99 {fmt_us(p['p99_us'])}, {p['errors_total']} unanswered; no pool {t['req_per_s']:.0f} req/s, "
        f"p99 {fmt_us(t['p99_us'])}, {t['errors_total']} unanswered"
    )
    rule = (
        f"The pool counts as better if it has >= {BETTER_RPS:g}x the req/s (throughput), or no "
        "unanswered request and a p99 no higher (response to every client)."
    )
    if not rps_better and not tail_better:
        return Verdict(
            HOLDS,
            key,
            "Far above its cap the pool is no better than no pool: the connections beyond the "
            f"workers wait in the backlog (a worker serves one connection until it closes). {rule}",
        )
    if rps_better and tail_better:
        return Verdict(DOES_NOT_HOLD, key, f"The pool is better on both counts. {rule}")
    return Verdict(PARTLY, key, f"The pool is better on one count only. {rule}")


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for model in ("threadpool", "threads"):
        ok = [r for r in numbers[model] if r.get("status") == "ok"]
        xs = [r["active"] for r in ok]
        axes[0].plot(xs, [r["req_per_s"] for r in ok], "o-", label=model)
        axes[1].plot(xs, [(r["p99_us"] or 0) / 1000 for r in ok], "o-", label=model)
        axes[2].plot(xs, [r["errors_total"] for r in ok], "o-", label=model)
    for ax, label in zip(axes, ["requests/s", "p99 of answered (ms)", "unanswered requests"], strict=True):
        ax.axvline(numbers["pool_threads"], color="gray", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections (dashed: pool size)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Claim 3: a thread pool below and above its cap")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
