# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 8: poll has no limit; about 1 GB of memory for 100k watched connections.

Experiment: for ``poll`` and ``epoll``, a fresh server per size, SIZES idle
connections held open by the load generator (each proven alive by one round
trip).  Measured with the connections open: the server's RSS and PSS
(user-space memory: Python objects, buffers) and the machine's kernel slab
(``/proc/meminfo`` Slab: socket structures, epoll items), minus the same
before connecting.  The slab delta covers *both* ends of each loopback
connection, so half of it is charged to the server; it is machine-wide, so
other tenants add noise.  Method of extrapolation: a least-squares line of
memory against connections, evaluated at 100k, one per repeat (the models
alternate, every point on a fresh server).
"""

from __future__ import annotations

from typing import Any

from iomodels.claims.base import (
    DOES_NOT_HOLD,
    HOLDS,
    PARTLY,
    UNDECIDED,
    Verdict,
    against,
    below,
    closest,
    decide,
    median,
    not_measurable,
    spread,
    undecided_text,
    unmeasurable,
)
from iomodels.claims.lab import Lab, connect, roundtrip
from iomodels.compare.runner import HOST
from iomodels.loadgen.runner import LoadConfig, LoadGenerator

ID = "8"
TITLE = "poll: no limit, ~1 GB per 100k watched events"
QUOTE_ZH = "poll没有，理论上poll可以开启无限大，1G内存大概够你开10W个事件去监听。"
QUOTE_EN = (
    "poll has no [such limit]; in theory poll can be opened without bound: 1 GB of memory is "
    "about enough to watch 100,000 events."
)
MEASURES = (
    "server memory (RSS + half the kernel slab) per idle connection, poll and epoll, extrapolated to 100k"
)

MODELS = ("poll", "epoll")
TARGET = 100_000  # the seed's "10W"
MIB = 2**20

# verdict thresholds on the estimate for TARGET connections (poll)
ENOUGH_BYTES = 1024 * MIB  # "1G is about enough"
SAME_ORDER_BYTES = 2048 * MIB  # up to 2x over: "about" still partly right
ONE_G = "poll's estimate for 100k against 1 GiB"
TWO_G = "poll's estimate for 100k against 2 GiB"


def slab_bytes() -> int:
    total = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(("SReclaimable:", "SUnreclaim:")):
                total += int(line.split()[1]) * 1024
    return total


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def _point(lab: Lab, model: str, n: int) -> dict[str, Any]:
    with lab.server(model) as server:
        with connect(server.port) as sock:
            roundtrip(sock, b"warm")
        base = server.resources()
        slab0 = slab_bytes()
        config = LoadConfig(host=HOST, port=server.port, connections=0, idle=n, cpus=lab.gen_cpus)
        with LoadGenerator(config) as gen:
            setup = gen.setup(timeout_s=max(10.0, n / 500))
            res = server.resources()
            slab1 = slab_bytes()
    return {
        "connections": n,
        "alive": setup["idle_alive"],
        "rss_mib": res["srv_rss_mib"],
        "pss_mib": res["srv_pss_mib"],
        "rss_base_mib": base["srv_rss_mib"],
        "server_fds": res["srv_fds"],
        "slab_delta_mib": round((slab1 - slab0) / MIB, 1),
    }


def _estimate(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The fit of one repeat's points: bytes per connection and the estimate for TARGET."""
    xs = [p["alive"] for p in points]
    a_rss, b_rss = fit(xs, [p["rss_mib"] * MIB for p in points])
    _, b_slab = fit(xs, [p["slab_delta_mib"] * MIB for p in points])
    per_conn_kernel = max(0.0, b_slab / 2)  # two sockets per loopback connection
    return {
        "rss_bytes_per_conn": round(b_rss),
        "kernel_bytes_per_conn": round(per_conn_kernel),
        "rss_intercept_mib": round(a_rss / MIB, 1),
        "estimate_100k_mib": round((a_rss + (b_rss + per_conn_kernel) * TARGET) / MIB),
        "max_alive": max(xs),
    }


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable(*MODELS)
    if why:
        return not_measurable(why)
    sizes = (1000, 10000) if quick else (1000, 5000, 10000, 15000)
    sizes = tuple(n for n in sizes if n + 100 < lab.nofile)
    out: dict[str, Any] = {"sizes": sizes, "rlimit_nofile": lab.nofile, "target": TARGET, "models": {}}

    def one(model: str, rep: int) -> list[dict[str, Any]]:
        return [_point(lab, model, n) for n in sizes]

    for model, reps in lab.interleave(list(MODELS), one).items():
        fits = [_estimate(points) for points in reps]  # one line per repeat
        out["models"][model] = {
            "points": [p for points in reps for p in points],
            **{k: median([f[k] for f in fits]) for k in fits[0]},
            "max_alive": max(f["max_alive"] for f in fits),  # a count, not a median
            "repeats": fits,
        }
    return out


def _all(d: dict[str, Any], key: str) -> list[float]:
    return [r[key] for r in d.get("repeats", [d])]


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    poll = numbers["models"]["poll"]
    est = [x * MIB for x in _all(poll, "estimate_100k_mib")]
    one_g = against(est, ENOUGH_BYTES)
    two_g = against(est, SAME_ORDER_BYTES)
    notes = {ONE_G: one_g, TWO_G: two_g}
    parts = {ONE_G: below(one_g), TWO_G: below(two_g)}

    def rule(p: dict[str, bool]) -> str:
        return HOLDS if p[ONE_G] else PARTLY if p[TWO_G] else DOES_NOT_HOLD

    d = decide(parts, rule)
    mib = lambda x: f"{x:.0f}"  # noqa: E731
    kib = lambda x: f"{x / 1024:.1f}"  # noqa: E731
    others = ", ".join(
        f"{m} {spread(_all(dd, 'estimate_100k_mib')).show(mib)} MiB"
        for m, dd in numbers["models"].items()
        if m != "poll"
    )
    key = (
        f"poll: {spread(_all(poll, 'rss_bytes_per_conn')).show(kib)} KiB user + "
        f"{spread(_all(poll, 'kernel_bytes_per_conn')).show(kib)} KiB kernel per connection -> "
        f"{spread(_all(poll, 'estimate_100k_mib')).show(mib)} MiB for 100k ({others}); "
        f"served {poll['max_alive']}"
    )
    method = (
        f"Estimate = intercept + (RSS slope + half the slab slope) x 100k, one line per repeat over "
        f"{len(numbers['sizes'])} sizes. poll held {poll['max_alive']} connections: its only limit here "
        f"is RLIMIT_NOFILE ({numbers['rlimit_nofile']}). Thresholds, for every repeat's estimate: "
        f"<= {ENOUGH_BYTES // MIB} MiB holds, <= {SAME_ORDER_BYTES // MIB} MiB partly."
    )
    margin = closest(one_g, two_g)
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, undecided_text(d, notes) + " " + method, margin)
    lead = {
        HOLDS: "1 GB is enough for 100k connections on poll. ",
        PARTLY: "More than 1 GB, but within 2x of it. ",
        DOES_NOT_HOLD: "100k connections need more than twice 1 GB. ",
    }[d.verdict]
    return Verdict(d.verdict, key, lead + method, margin)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for model, d in numbers["models"].items():
        xs = [p["alive"] for p in d["points"]]
        ys = [p["rss_mib"] + p["slab_delta_mib"] / 2 for p in d["points"]]
        dots = ax.plot(xs, ys, "o", alpha=0.6, label=f"{model} measured, every repeat (RSS + slab/2)")
        for k, f in enumerate(d.get("repeats", [d])):  # one extrapolated line per repeat
            ax.plot(
                [0, numbers["target"]],
                [f["rss_intercept_mib"], f["estimate_100k_mib"]],
                "--",
                lw=1,
                color=dots[0].get_color(),
                label=f"{model} extrapolated: {spread(_all(d, 'estimate_100k_mib')).show()} MiB"
                if k == 0
                else None,
            )
    ax.axhline(1024, color="k", ls=":", lw=1, label="the seed's 1 GB")
    ax.set_xlabel("idle connections")
    ax.set_ylabel("server memory (MiB)")
    ax.legend(fontsize=7)
    ax.set_title("Claim 8: memory per watched connection, extrapolated to 100k")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
