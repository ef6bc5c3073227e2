# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 6: with few connections select/epoll is not necessarily faster than threads.

Experiment: ``threads`` and ``epoll``, closed loop, 1 KiB echo, at
CONNECTIONS from 1 up: requests/s, p99 and server CPU per request.  The
claim has two halves: at the fewest connections epoll is not faster (and may
have a higher latency); at the most connections epoll has the advantage.
Both sweeps are repeated, interleaved.
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
    below,
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

ID = "6"
TITLE = "few connections: epoll not faster than threads"
QUOTE_ZH = (
    "如果处理的连接数不是很高的话，使用select/epoll的web server不一定比使用multi-threading + blocking IO"
    "的web server性能更好，可能延迟还更大。"
    "select/epoll的优势并不是对于单个连接能处理得更快，而是在于能处理更多的连接。"
)
QUOTE_EN = (
    "If the number of connections is not high, a web server using select/epoll is not necessarily faster "
    "than one using multi-threading + blocking IO, and may have a higher latency. The advantage of "
    "select/epoll is not that it handles a single connection faster, but that it handles more connections."
)
MEASURES = "req/s, p99 and CPU µs/request of `threads` vs `epoll` from 1 to 1000 (5000) connections"

# verdict thresholds
CLEARLY = 1.10  # 10 %: "faster" means at least this ratio of req/s (or of CPU per request)


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("threads", "epoll")
    if why:
        return not_measurable(why)
    # the verdict reads the fewest and the most connections: --quick measures just those
    sizes = [1, 1000] if quick else [1, 10, 100, 1000, 5000]
    duration = 0.6 if quick else 2.0
    points = [(n, 0) for n in sizes]
    rows = repeated_sweep(lab, {"threads": ("threads", points, []), "epoll": ("epoll", points, [])}, duration)
    return {"sizes": sizes, **rows}


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    t = {r["active"]: r for r in numbers["threads"] if r.get("status") == "ok"}
    e = {r["active"]: r for r in numbers["epoll"] if r.get("status") == "ok"}
    common = sorted(set(t) & set(e))
    if len(common) < 2:
        return Verdict(NOT_MEASURABLE, "-", "fewer than two connection counts ran on both models")
    lo, hi = common[0], common[-1]
    few = compare(samples(e[lo], "req_per_s"), samples(t[lo], "req_per_s"), CLEARLY)
    many_rps = compare(samples(e[hi], "req_per_s"), samples(t[hi], "req_per_s"), CLEARLY)
    many_cpu = compare(samples(e[hi], "srv_us_per_req"), samples(t[hi], "srv_us_per_req"), 1 / CLEARLY)
    few_key = f"epoll's req/s at {lo} connection(s) against {CLEARLY:g}x threads'"
    rps_key = f"epoll's req/s at {hi} connections against {CLEARLY:g}x threads'"
    cpu_key = f"epoll's CPU/request at {hi} connections against 1/{CLEARLY:g} of threads'"
    notes = {few_key: few, rps_key: many_rps, cpu_key: many_cpu}
    parts = {
        # "not necessarily faster": it holds unless epoll is faster in every repeat
        few_key: True if few is None else few.above is not True,
        rps_key: above(many_rps),
        cpu_key: below(many_cpu),
    }

    def rule(p: dict[str, bool]) -> str:
        few_not_faster = p[few_key]
        many_better = p[rps_key] or p[cpu_key]
        if few_not_faster and many_better:
            return HOLDS
        return PARTLY if few_not_faster or many_better else DOES_NOT_HOLD

    d = decide(parts, rule)

    def show(row: dict[str, Any], key: str, fmt=lambda x: f"{x:.0f}") -> str:
        sp = spread(samples(row, key))
        return sp.show(fmt) if sp else "n/a"

    us = lambda x: f"{x:.1f}"  # noqa: E731
    key = (
        f"{lo} conn: epoll {show(e[lo], 'req_per_s')} vs threads {show(t[lo], 'req_per_s')} req/s, p99 "
        f"{show(e[lo], 'p99_us', fmt_us)} vs {show(t[lo], 'p99_us', fmt_us)}; {hi} conn: "
        f"{show(e[hi], 'req_per_s')} vs {show(t[hi], 'req_per_s')} req/s, "
        f"{show(e[hi], 'srv_us_per_req', us)} vs {show(t[hi], 'srv_us_per_req', us)} µs/req"
    )
    rule_text = (
        f"Few connections ({lo}): epoll is 'not faster' unless it has >= {CLEARLY:g}x threads' req/s "
        f"in every repeat. Many ({hi}): epoll's advantage is >= {CLEARLY:g}x the req/s or <= "
        f"1/{CLEARLY:g} the CPU per request, in every repeat."
    )
    margin = closest(few, many_rps if parts[rps_key] or not parts[cpu_key] else many_cpu)
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, undecided_text(d, notes) + " " + rule_text, margin)
    if d.verdict == HOLDS:
        return Verdict(HOLDS, key, "Both halves hold. " + rule_text, margin)
    if d.verdict == PARTLY:
        half = "few-connections half" if parts[few_key] else "many-connections half"
        return Verdict(PARTLY, key, f"Only the {half} holds. " + rule_text, margin)
    return Verdict(DOES_NOT_HOLD, key, "Neither half holds. " + rule_text, margin)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for model in ("threads", "epoll"):
        ok = [r for r in numbers[model] if r.get("status") == "ok"]
        xs = [r["active"] for r in ok]
        figures.line(axes[0], xs, [samples(r, "req_per_s") for r in ok], model)
        figures.line(axes[1], xs, [samples(r, "p99_us") for r in ok], model, scale=1e-3)
        figures.line(axes[2], xs, [samples(r, "srv_us_per_req") for r in ok], model)
    for ax, label in zip(axes, ["requests/s", "p99 (ms)", "server CPU µs / request"], strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.suptitle("Claim 6: threads vs epoll, few to many connections (bars: min..max of repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
