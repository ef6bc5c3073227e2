# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 3: a pool caps the damage, but far above its cap it is no better than no pool.

Experiment: ``threadpool`` (POOL_THREADS workers, the serve default) and
``threads`` (no pool) in a closed loop at connection counts below, at and
far above the pool's size (1 KiB echo).  Per window: requests/s, p99 of the
answered requests and the requests that got no answer within the timeout
(connections waiting in the backlog for a worker: each worker serves one
connection until it closes).  Both sweeps are repeated, interleaved.
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
    closest,
    compare,
    decide,
    fmt_us,
    not_measurable,
    spread,
    undecided_text,
    unmeasurable,
)
from iomodels.claims.lab import Lab, repeated_sweep, samples

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
RPS = f"the pool's req/s against {BETTER_RPS:g}x no pool's"
P99 = "the pool's p99 against no pool's"
UNANSWERED = "the pool's unanswered requests (none in some repeats, some in others)"


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("threadpool", "threads")
    if why:
        return not_measurable(why)
    sizes = [4, 32] if quick else [4, 8, 32, 128]
    duration = 0.6 if quick else 2.0
    extra = ["--threads", str(POOL_THREADS)]
    points = [(n, 0) for n in sizes]
    plans = {"threadpool": ("threadpool", points, extra), "threads": ("threads", points, [])}
    rows = repeated_sweep(lab, plans, duration, timeout_s=TIMEOUT_S)
    return {"pool_threads": POOL_THREADS, "timeout_s": TIMEOUT_S, "sizes": sizes, **rows}


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    pool = {r["active"]: r for r in numbers["threadpool"] if r.get("status") == "ok"}
    nopool = {r["active"]: r for r in numbers["threads"] if r.get("status") == "ok"}
    common = sorted(set(pool) & set(nopool))
    if not common or common[-1] <= numbers["pool_threads"]:
        return Verdict(NOT_MEASURABLE, "-", "no connection count above the pool's size was measured")
    n = common[-1]
    p, t = pool[n], nopool[n]
    rps = compare(samples(p, "req_per_s"), samples(t, "req_per_s"), BETTER_RPS)
    p99 = compare(samples(p, "p99_us"), samples(t, "p99_us"))
    unanswered = samples(p, "errors_total")
    notes = {RPS: rps, P99: p99, UNANSWERED: None}
    parts = {
        # the seed says the pool is "not much better": only a pool clearly better (every
        # repeat above 1.1x, base.compare) refutes it; inside the noise is no difference
        RPS: rps is not None and rps.above is True,
        # "no higher": the pool's p99 clearly below, or the two inside the noise of each other
        P99: True if p99 is None or p99.lower is None else p99.lower == "a",
        UNANSWERED: True if all(x == 0 for x in unanswered) else None if 0 in unanswered else False,
    }

    def rule(q: dict[str, bool]) -> str:
        tail_better = q[UNANSWERED] and q[P99]
        if not q[RPS] and not tail_better:
            return HOLDS
        if q[RPS] and tail_better:
            return DOES_NOT_HOLD
        return PARTLY

    d = decide(parts, rule)

    def show(row: dict[str, Any], key: str, fmt) -> str:
        sp = spread(samples(row, key))
        return sp.show(fmt) if sp else "n/a"

    key = (
        f"{n} connections on {numbers['pool_threads']} workers: pool "
        f"{show(p, 'req_per_s', lambda x: f'{x:.0f}')} req/s, p99 {show(p, 'p99_us', fmt_us)}, "
        f"{show(p, 'errors_total', lambda x: f'{x:.0f}')} unanswered; no pool "
        f"{show(t, 'req_per_s', lambda x: f'{x:.0f}')} req/s, p99 {show(t, 'p99_us', fmt_us)}, "
        f"{show(t, 'errors_total', lambda x: f'{x:.0f}')} unanswered"
    )
    rule_text = (
        f"The pool counts as better if it has >= {BETTER_RPS:g}x the req/s (throughput) in every "
        "repeat, or no unanswered request and a p99 no higher (response to every client)."
    )
    margin = closest(rps, p99)
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, undecided_text(d, notes) + " " + rule_text, margin)
    lead = {
        HOLDS: "Far above its cap the pool is no better than no pool: the connections beyond the "
        "workers wait in the backlog (a worker serves one connection until it closes).",
        DOES_NOT_HOLD: "The pool is better on both counts.",
        PARTLY: "The pool is better on one count only.",
    }[d.verdict]
    return Verdict(d.verdict, key, f"{lead} {rule_text}", margin)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for model in ("threadpool", "threads"):
        ok = [r for r in numbers[model] if r.get("status") == "ok"]
        xs = [r["active"] for r in ok]
        figures.line(axes[0], xs, [samples(r, "req_per_s") for r in ok], model)
        figures.line(axes[1], xs, [samples(r, "p99_us") for r in ok], model, scale=1e-3)
        figures.line(axes[2], xs, [samples(r, "errors_total") for r in ok], model)
    for ax, label in zip(axes, ["requests/s", "p99 of answered (ms)", "unanswered requests"], strict=True):
        ax.axvline(numbers["pool_threads"], color="gray", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections (dashed: pool size)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Claim 3: a thread pool below and above its cap (bars: min..max of repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
