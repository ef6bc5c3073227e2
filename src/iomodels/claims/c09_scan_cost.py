# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 9: select and poll ask the kernel about every descriptor; epoll does not.

Experiment: ``select``, ``poll`` and ``epoll`` with ACTIVE connections in a
closed loop (1 KiB echo) while IDLE connections stay open and silent: the
server's CPU microseconds per request as the idle count grows.  A scan of
every watched descriptor per wait shows up as a cost per request that grows
with the idle ones; epoll's ready list should not.  ``select`` stops below
FD_SETSIZE (claim 7).  The three sweeps are repeated, interleaved; growth is
read within each repeat's server.
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
    against,
    below,
    closest,
    decide,
    not_measurable,
    spread,
    undecided_text,
    unmeasurable,
)
from iomodels.claims.lab import Lab, repeated_sweep, samples

ID = "9"
TITLE = "select/poll scan every fd, epoll does not"
QUOTE_ZH = (
    "select 和 poll 有一个共同的机制，都是采用轮训的方式去询问内核，有没有数据准备好了。"
    " …… epoll是最好的，采用的是回调机制，解决了select和poll共同存在的问题"
)
QUOTE_EN = (
    "select and poll share one mechanism: both poll the kernel in turn, asking whether data is ready. "
    "... epoll is the best: it uses callbacks and solves the problem select and poll share."
)
MEASURES = "server CPU µs per request vs idle connections (0 .. 15000), 10 active: select, poll, epoll"

ACTIVE = 10
SELECT_MAX_IDLE = 900  # FD_SETSIZE 1024 minus the active ones, the listener, stdio...

# verdict thresholds: CPU per request at the largest idle count / at none
GROWS = 1.5  # select and poll: at least this growth
FLAT = 1.25  # epoll: at most this growth


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("select", "poll", "epoll")
    if why:
        return not_measurable(why)
    # the verdict reads no idle and the most idle of each model: --quick measures just those
    idle = [0, 5000] if quick else [0, SELECT_MAX_IDLE, 5000, 15000]
    idle = [n for n in idle if n + ACTIVE + 100 < lab.nofile]
    duration = 0.6 if quick else 2.0
    plans = {
        "select": ("select", [(ACTIVE, 0), (ACTIVE, SELECT_MAX_IDLE)], []),
        "poll": ("poll", [(ACTIVE, n) for n in idle], []),
        "epoll": ("epoll", [(ACTIVE, n) for n in idle], []),
    }
    return {
        "active": ACTIVE,
        "idle": sorted({0, SELECT_MAX_IDLE, *idle}),
        **repeated_sweep(lab, plans, duration),
    }


def growth(rows: list[dict[str, Any]]) -> tuple[int, list[float]]:
    """(the largest idle count, CPU per request there / with no idle, per repeat).

    Paired within a repeat (one server, minutes apart at most), so drift between
    repeats does not widen the spread."""
    ok = {r["idle"]: r for r in rows if r.get("status") == "ok" and r.get("srv_us_per_req")}
    if 0 not in ok or len(ok) < 2:
        return 0, []
    top = max(ok)
    base_reps = ok[0].get("repeats", [ok[0]])
    top_reps = ok[top].get("repeats", [ok[top]])
    ratios = [
        t["srv_us_per_req"] / b["srv_us_per_req"]
        for b, t in zip(base_reps, top_reps, strict=False)
        if b.get("status") == "ok"
        and t.get("status") == "ok"
        and b.get("srv_us_per_req")
        and t.get("srv_us_per_req")
    ]
    return top, ratios


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    g = {m: growth(numbers[m]) for m in ("select", "poll", "epoll")}
    if any(not x for _, x in g.values()):
        return Verdict(NOT_MEASURABLE, "-", "a model lacks the no-idle or the idle cell")
    notes = {f"{m}'s growth against {GROWS:g}x": against(g[m][1], GROWS) for m in ("select", "poll")}
    flat_key = f"epoll's growth against {FLAT:g}x"
    notes[flat_key] = against(g["epoll"][1], FLAT)
    parts = {k: above(c) for k, c in notes.items() if k != flat_key}
    parts[flat_key] = below(notes[flat_key])
    scan_keys = [k for k in parts if k != flat_key]

    def rule(p: dict[str, bool]) -> str:
        scanners = sum(p[k] for k in scan_keys)
        if scanners == 2 and p[flat_key]:
            return HOLDS
        return PARTLY if scanners or p[flat_key] else DOES_NOT_HOLD

    d = decide(parts, rule)
    key = "CPU/request growth: " + ", ".join(
        f"{m} x{spread(x).show(lambda v: f'{v:.2f}')} at {n} idle" for m, (n, x) in g.items()
    )
    rule_text = (
        f"Thresholds: select and poll's CPU per request grows >= {GROWS:g}x from 0 idle to their "
        f"largest idle count; epoll's <= {FLAT:g}x; in every repeat (growth measured within one server)."
    )
    margin = closest(*notes.values())
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, undecided_text(d, notes) + " " + rule_text, margin)
    if d.verdict == HOLDS:
        return Verdict(
            HOLDS, key, "The scan cost shows in select and poll, not in epoll. " + rule_text, margin
        )
    if d.verdict == PARTLY:
        grows = [m for m, k in zip(("select", "poll"), scan_keys, strict=True) if parts[k]]
        return Verdict(
            PARTLY,
            key,
            f"Grows: {', '.join(grows) or 'neither'}; epoll flat: {parts[flat_key]}. " + rule_text,
            margin,
        )
    return Verdict(
        DOES_NOT_HOLD, key, "No scan cost shows, and epoll is not flat either. " + rule_text, margin
    )


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for model in ("select", "poll", "epoll"):
        ok = [r for r in numbers[model] if r.get("status") == "ok"]
        figures.line(ax, [r["idle"] for r in ok], [samples(r, "srv_us_per_req") for r in ok], model)
    ax.set_xlabel(f"idle connections (plus {numbers['active']} active)")
    ax.set_ylabel("server CPU µs / request (log)")
    ax.set_yscale("log")  # poll at 5000 idle is ~30x epoll: linear hides epoll's flat line
    ax.legend()
    ax.set_title("Claim 9: the cost of watching idle descriptors (bars: min..max of repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
