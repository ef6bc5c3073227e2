# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 9: select and poll ask the kernel about every descriptor; epoll does not.

Experiment: ``select``, ``poll`` and ``epoll`` with ACTIVE connections in a
closed loop (1 KiB echo) while IDLE connections stay open and silent: the
server's CPU microseconds per request as the idle count grows.  A scan of
every watched descriptor per wait shows up as a cost per request that grows
with the idle ones; epoll's ready list should not.  ``select`` stops below
FD_SETSIZE (claim 7).
"""

from __future__ import annotations

from typing import Any

from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, PARTLY, Verdict, not_measurable, ratio, unmeasurable
from iomodels.claims.lab import Lab, sweep

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
    idle = [0, SELECT_MAX_IDLE, 5000] if quick else [0, SELECT_MAX_IDLE, 5000, 15000]
    idle = [n for n in idle if n + ACTIVE + 100 < lab.nofile]
    duration = 1.0 if quick else 3.0
    out: dict[str, Any] = {"active": ACTIVE, "idle": idle}
    for model in ("select", "poll", "epoll"):
        points = [(ACTIVE, n) for n in idle if model != "select" or n <= SELECT_MAX_IDLE]
        out[model] = sweep(lab, model, points, duration)
    return out


def growth(rows: list[dict[str, Any]]) -> tuple[int, float | None]:
    ok = {r["idle"]: r for r in rows if r.get("status") == "ok" and r.get("srv_us_per_req")}
    if 0 not in ok or len(ok) < 2:
        return 0, None
    top = max(ok)
    return top, ratio(ok[top]["srv_us_per_req"], ok[0]["srv_us_per_req"])


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    g = {m: growth(numbers[m]) for m in ("select", "poll", "epoll")}
    if any(x is None for _, x in g.values()):
        return Verdict("not measurable", "-", "a model lacks the no-idle or the idle cell")
    key = "CPU/request growth: " + ", ".join(f"{m} x{x:.2f} at {n} idle" for m, (n, x) in g.items())
    scanners = [m for m in ("select", "poll") if g[m][1] >= GROWS]
    epoll_flat = g["epoll"][1] <= FLAT
    rule = (
        f"Thresholds: select and poll's CPU per request grows >= {GROWS:g}x from 0 idle to their "
        f"largest idle count; epoll's <= {FLAT:g}x."
    )
    if len(scanners) == 2 and epoll_flat:
        return Verdict(HOLDS, key, "The scan cost shows in select and poll, not in epoll. " + rule)
    if scanners or epoll_flat:
        return Verdict(
            PARTLY, key, f"Grows: {', '.join(scanners) or 'neither'}; epoll flat: {epoll_flat}. " + rule
        )
    return Verdict(DOES_NOT_HOLD, key, "No scan cost shows, and epoll is not flat either. " + rule)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for model in ("select", "poll", "epoll"):
        ok = [r for r in numbers[model] if r.get("status") == "ok"]
        ax.plot([r["idle"] for r in ok], [r["srv_us_per_req"] for r in ok], "o-", label=model)
    ax.set_xlabel(f"idle connections (plus {numbers['active']} active)")
    ax.set_ylabel("server CPU µs / request")
    ax.legend()
    ax.set_title("Claim 9: the cost of watching idle descriptors")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
