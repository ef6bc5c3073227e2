# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 12: asynchronous IO is the best of the models.

Experiment: the standard cell of BENCHMARKS.md (100 connections, closed
loop, 1 KiB echo) on every model that can serve 100 connections at once,
one server per model and round, ``lab.repeats`` interleaved rounds: server
CPU microseconds per request (the figure that
survives a shared machine), requests/s and p99.  "Best" is read as the
cheapest per request; ``io_uring`` is the asynchronous model.  The models
that cannot be told apart from the cheapest (their repeats overlap, directly or
through one another: ``ranking``) are reported as tied for first.
"""

from __future__ import annotations

from typing import Any

from iomodels import models
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
    median,
    not_measurable,
    spread,
    unmeasurable,
)
from iomodels.claims.lab import Lab, merge, samples, sweep
from iomodels.compare.runner import concurrency_limit

ID = "12"
TITLE = "asynchronous IO is the best model"
QUOTE_ZH = "异步IO模型在几种模型中是最好的，用户进程发起read操作之后，立刻就可以开始去做其它的事。"
QUOTE_EN = (
    "The asynchronous IO model is the best of the models: after the user process starts a read it "
    "can at once go and do other things."
)
MEASURES = "standard cell (100 connections, 1 KiB echo): server CPU µs/request of every model"

ASYNC_MODEL = "io_uring"
CONNECTIONS = 100

# verdict thresholds on CPU per request
# within 20 % of the cheapest in every repeat: "among the best".  The noise itself is the
# repeats' spread (base.compare): a model whose repeats overlap the cheapest's is tied with it
WITHIN = 1.20


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable(ASYNC_MODEL)
    if why:
        return not_measurable(why)
    duration = 0.6 if quick else 2.0
    out: dict[str, Any] = {"connections": CONNECTIONS, "rounds": lab.repeats, "models": {}, "skipped": {}}
    runnable = []
    for name in models.names():
        ok, reason = models.available(name)
        limit = concurrency_limit(name)
        if not ok:
            out["skipped"][name] = f"not available here: {reason}"
        elif limit is not None and limit < CONNECTIONS:
            out["skipped"][name] = (
                f"serves {limit} connection(s) at a time: the rest would wait in the backlog"
            )
        else:
            runnable.append(name)
    cells = lab.interleave(runnable, lambda name, rep: sweep(lab, name, [(CONNECTIONS, 0)], duration)[0])
    for name, got in cells.items():
        out["models"][name] = merge(got)
    return out


def costs(numbers: dict[str, Any]) -> dict[str, list[float]]:
    """{model: CPU µs per request in every repeat} for the models that ran."""
    return {
        m: samples(r, "srv_us_per_req")
        for m, r in numbers["models"].items()
        if r.get("status") == "ok" and samples(r, "srv_us_per_req")
    }


def ranking(cost: dict[str, list[float]]) -> tuple[list[str], list[str]]:
    """(models by median cost, the models tied for first).

    Tied for first: the first by median, every model that cannot be told apart
    from it (base.compare: the repeats overlap), and so on through every model
    that cannot be told apart from one of those.  The chain matters: when the
    first cannot be told from B, which model is first is itself inside the
    noise, and a model that only B overlaps could have been tied with the first
    in the next run (two quick runs here: io_uring tied with the first in one,
    tied only with the models tied with it in the other)."""
    order = sorted(cost, key=lambda m: median(cost[m]))
    tied = [order[0]]
    grew = True
    while grew:
        grew = False
        for m in order:
            if m not in tied and any(not compare(cost[m], cost[t]).separated for t in tied):
                tied.append(m)
                grew = True
    return order, [m for m in order if m in tied]


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    cost = costs(numbers)
    if ASYNC_MODEL not in cost:
        return Verdict(NOT_MEASURABLE, "-", f"{ASYNC_MODEL} did not complete the standard cell")
    order, tied = ranking(cost)
    best = order[0]
    us = lambda x: f"{x:.2f}"  # noqa: E731
    mine = spread(cost[ASYNC_MODEL]).show(us)
    first = f"tied for first: {', '.join(tied)} (repeats overlap)" if len(tied) > 1 else f"first: {best}"
    key = f"{ASYNC_MODEL} {mine} µs/req, rank {order.index(ASYNC_MODEL) + 1}/{len(order)} by median; {first}"
    listing = ", ".join(f"{m} {spread(cost[m]).show(us)}" for m in order)
    # "the best" is a difference: io_uring below every other model in every repeat.  Tied
    # for first (repeats overlapping, base.compare) is no difference, as in claims 3, 5
    # and 6, so it is not shown to be the best: partly, like a model clearly second but
    # within 20 %.  (Reading a tie as "might be the best, undecided" made this verdict
    # follow the machine's load: a quiet run separates io_uring from poll by 7 %, where a
    # loaded one ties them.)
    against_first = compare(cost[ASYNC_MODEL], cost[best], WITHIN) if best != ASYNC_MODEL else None
    near = True if against_first is None else None if against_first.lower is None else against_first.below
    in_group = ASYNC_MODEL in tied and len(tied) > 1
    order_text = f"Order (µs/req, median and range): {listing}."
    others = [compare(cost[ASYNC_MODEL], cost[m]) for m in order if m != ASYNC_MODEL]
    if tied == [ASYNC_MODEL]:
        lead = (
            "The asynchronous model costs the least CPU per request: below every other model, every repeat."
        )
        return Verdict(HOLDS, key, f"{lead} {order_text}", closest(*others))
    tie_margin = closest(*(compare(cost[ASYNC_MODEL], cost[m]) for m in tied if m != ASYNC_MODEL))
    if in_group and near is not False:
        lead = (
            f"Among the cheapest, not shown to be the cheapest: tied for first with "
            f"{', '.join(m for m in tied if m != ASYNC_MODEL)} (their repeats overlap, one with the next), "
            "and a difference inside the noise is no difference."
        )
        return Verdict(PARTLY, key, f"{lead} {order_text}", tie_margin)
    if near:
        lead = f"Within {WITHIN - 1:.0%} of the cheapest in every repeat, but clearly not the cheapest."
        return Verdict(PARTLY, key, f"{lead} {order_text}", closest(compare(cost[ASYNC_MODEL], cost[best])))
    if near is False:
        lead = f"More than {WITHIN - 1:.0%} above the cheapest in every repeat."
        return Verdict(DOES_NOT_HOLD, key, f"{lead} {order_text}", closest(against_first))
    return Verdict(
        UNDECIDED,
        key,
        f"Undecided on this machine: {ASYNC_MODEL} against {WITHIN:g}x the cheapest ({best}) is inside the "
        f"noise ({against_first.figures()}): it would be partly or does not hold. {order_text}",
        closest(against_first),
    )


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    cost = costs(numbers)
    if not cost:
        return False
    order, tied = ranking(cost)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    colours = ["#c0392b" if m == ASYNC_MODEL else "#2980b9" for m in order]
    labels = [f"{m} (tied 1st)" if m in tied and len(tied) > 1 else m for m in order]
    figures.bars(axes[0], labels, [cost[m] for m in order], colours=colours, horizontal=True)
    axes[0].set_xlabel("server CPU µs / request (lower is better)")
    axes[0].invert_yaxis()
    rps = [samples(numbers["models"][m], "req_per_s") for m in order]
    figures.bars(axes[1], labels, rps, colours=colours, horizontal=True)
    axes[1].set_xlabel("requests/s (noisy on a shared VM)")
    axes[1].invert_yaxis()
    fig.suptitle(
        f"Claim 12: the standard cell ({numbers['connections']} connections, 1 KiB echo; "
        f"{numbers.get('rounds', 1)} rounds, dots: each)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
