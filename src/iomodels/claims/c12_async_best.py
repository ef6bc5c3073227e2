# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 12: asynchronous IO is the best of the models.

Experiment: the standard cell of BENCHMARKS.md (100 connections, closed
loop, 1 KiB echo) on every model that can serve 100 connections at once,
one server per model and round, RUNS interleaved rounds (medians): server
CPU microseconds per request (the figure that
survives a shared machine), requests/s and p99.  "Best" is read as the
cheapest per request; ``io_uring`` is the asynchronous model.
"""

from __future__ import annotations

import statistics
from typing import Any

from iomodels import models
from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, PARTLY, Verdict, not_measurable, unmeasurable
from iomodels.claims.lab import Lab, sweep
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
# within 20 % of the cheapest: "among the best".  Not tighter: on this shared VM one model's
# rounds differ by up to 20 % (rounds_us_per_req of a --quick run: sigio 5.67 / 7.25)
WITHIN = 1.20


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable(ASYNC_MODEL)
    if why:
        return not_measurable(why)
    duration = 1.0 if quick else 3.0
    rounds = 2 if quick else 3
    out: dict[str, Any] = {"connections": CONNECTIONS, "rounds": rounds, "models": {}, "skipped": {}}
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
    cells: dict[str, list[dict[str, Any]]] = {name: [] for name in runnable}
    for k in range(rounds):  # interleaved, order rotated: drift on a shared machine hits every model alike
        for name in runnable[k:] + runnable[:k]:
            cells[name].append(sweep(lab, name, [(CONNECTIONS, 0)], duration)[0])
    for name, got in cells.items():
        ok_cells = [c for c in got if c.get("status") == "ok" and c.get("srv_us_per_req")]
        if not ok_cells:
            out["models"][name] = got[0]
            continue
        row = dict(ok_cells[0])
        for key in ("srv_us_per_req", "req_per_s", "p99_us", "p50_us"):
            vals = [c[key] for c in ok_cells if c.get(key) is not None]
            row[key] = round(statistics.median(vals), 2) if vals else None
        row["rounds_us_per_req"] = [c["srv_us_per_req"] for c in ok_cells]
        out["models"][name] = row
    return out


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    cost = {
        m: r["srv_us_per_req"]
        for m, r in numbers["models"].items()
        if r.get("status") == "ok" and r.get("srv_us_per_req")
    }
    if ASYNC_MODEL not in cost:
        return Verdict("not measurable", "-", f"{ASYNC_MODEL} did not complete the standard cell")
    ranking = sorted(cost, key=cost.get)
    best = ranking[0]
    mine = cost[ASYNC_MODEL]
    rank = ranking.index(ASYNC_MODEL) + 1
    key = f"{ASYNC_MODEL} {mine} µs/req, rank {rank}/{len(ranking)}; cheapest {best} {cost[best]} µs/req"
    order = ", ".join(f"{m} {cost[m]}" for m in ranking)
    if best == ASYNC_MODEL:
        return Verdict(HOLDS, key, f"The asynchronous model costs the least CPU per request. Order: {order}.")
    if mine <= WITHIN * cost[best]:
        return Verdict(
            PARTLY, key, f"Within {WITHIN - 1:.0%} of the cheapest, but not the cheapest. Order: {order}."
        )
    return Verdict(DOES_NOT_HOLD, key, f"More than {WITHIN - 1:.0%} above the cheapest. Order: {order}.")


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    rows = {m: r for m, r in numbers["models"].items() if r.get("status") == "ok" and r.get("srv_us_per_req")}
    order = sorted(rows, key=lambda m: rows[m]["srv_us_per_req"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    colours = ["#c0392b" if m == ASYNC_MODEL else "#2980b9" for m in order]
    axes[0].barh(order, [rows[m]["srv_us_per_req"] for m in order], color=colours)
    axes[0].set_xlabel("server CPU µs / request (lower is better)")
    axes[0].invert_yaxis()
    axes[1].barh(order, [rows[m]["req_per_s"] for m in order], color=colours)
    axes[1].set_xlabel("requests/s (noisy on a shared VM)")
    axes[1].invert_yaxis()
    fig.suptitle(f"Claim 12: the standard cell ({numbers['connections']} connections, 1 KiB echo)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
