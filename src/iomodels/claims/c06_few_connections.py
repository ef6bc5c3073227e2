# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 6: with few connections select/epoll is not necessarily faster than threads.

Experiment: ``threads`` and ``epoll``, closed loop, 1 KiB echo, at
CONNECTIONS from 1 up: requests/s, p99 and server CPU per request.  The
claim has two halves: at the fewest connections epoll is not faster (and may
have a higher latency); at the most connections epoll has the advantage.
"""

from __future__ import annotations

from typing import Any

from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, PARTLY, Verdict, fmt_us, not_measurable, unmeasurable
from iomodels.claims.lab import Lab, sweep

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
    sizes = [1, 10, 100, 1000] if quick else [1, 10, 100, 1000, 5000]
    duration = 1.0 if quick else 3.0
    return {
        "sizes": sizes,
        "threads": sweep(lab, "threads", [(n, 0) for n in sizes], duration),
        "epoll": sweep(lab, "epoll", [(n, 0) for n in sizes], duration),
    }


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    t = {r["active"]: r for r in numbers["threads"] if r.get("status") == "ok"}
    e = {r["active"]: r for r in numbers["epoll"] if r.get("status") == "ok"}
    common = sorted(set(t) & set(e))
    if len(common) < 2:
        return Verdict("not measurable", "-", "fewer than two connection counts ran on both models")
    lo, hi = common[0], common[-1]
    few_not_faster = e[lo]["req_per_s"] < CLEARLY * t[lo]["req_per_s"]
    many_better = (
        e[hi]["req_per_s"] >= CLEARLY * t[hi]["req_per_s"]
        or CLEARLY * e[hi]["srv_us_per_req"] <= t[hi]["srv_us_per_req"]
    )
    key = (
        f"{lo} conn: epoll {e[lo]['req_per_s']:.0f} vs threads {t[lo]['req_per_s']:.0f} req/s, p99 "
        f"{fmt_us(e[lo]['p99_us'])} vs {fmt_us(t[lo]['p99_us'])}; {hi} conn: {e[hi]['req_per_s']:.0f} vs "
        f"{t[hi]['req_per_s']:.0f} req/s, {e[hi]['srv_us_per_req']} vs {t[hi]['srv_us_per_req']} µs/req"
    )
    rule = (
        f"Few connections ({lo}): epoll is 'not faster' below {CLEARLY:g}x threads' req/s. "
        f"Many ({hi}): epoll's advantage is >= {CLEARLY:g}x the req/s or <= 1/{CLEARLY:g} "
        "the CPU per request."
    )
    if few_not_faster and many_better:
        return Verdict(HOLDS, key, "Both halves hold. " + rule)
    if few_not_faster or many_better:
        half = "few-connections half" if few_not_faster else "many-connections half"
        return Verdict(PARTLY, key, f"Only the {half} holds. " + rule)
    return Verdict(DOES_NOT_HOLD, key, "Neither half holds. " + rule)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for model in ("threads", "epoll"):
        ok = [r for r in numbers[model] if r.get("status") == "ok"]
        xs = [r["active"] for r in ok]
        axes[0].plot(xs, [r["req_per_s"] for r in ok], "o-", label=model)
        axes[1].plot(xs, [(r["p99_us"] or 0) / 1000 for r in ok], "o-", label=model)
        axes[2].plot(xs, [r["srv_us_per_req"] for r in ok], "o-", label=model)
    for ax, label in zip(axes, ["requests/s", "p99 (ms)", "server CPU µs / request"], strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.suptitle("Claim 6: threads vs epoll, few to many connections")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
