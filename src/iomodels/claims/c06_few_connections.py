# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 6: with few connections a select/epoll web server is not necessarily faster than threads.

The text speaks of *web servers*, so the experiment is one: ``threads``
(multi-threading + blocking IO, a thread per connection) and ``epoll``, both
serving HTTP/1.1 (``iomodels serve --protocol http``), driven by wrk on
``GET /plaintext`` over keep-alive connections, at CONNECTIONS (1 to 1000).
Per connection count: wrk's requests/s and its p50 / p99 latency (its own
HdrHistogram), and the server's exact CPU per request (schedstat of its whole
session, harness.session_cpu_s, over the wrk run).  One server per model and
repeat serves every count in turn; the two models' sweeps alternate, the
order rotated per repeat (Lab.interleave).

Each figure at each count is compared with base.py's rule: a model is
"ahead" on a figure when it is CLEARLY (10 %) better in every repeat and by
more than the spread; otherwise neither is.  The claim has two halves:

  few connections   at the fewest count epoll is not faster: neither its
                    req/s nor its p50 is ahead of threads' ("not
                    necessarily better"; its latency "may" be higher, so a
                    higher p50/p99 is reported, not required)
  many connections  at the most count epoll is ahead in req/s or in CPU per
                    request ("handles more connections")

and the verdict says from which count on epoll's req/s leads.

wrk is a C program outside Python: where it is missing the claim is not
measured and says how to install it, rather than falling back to another
load generator and calling that the text's experiment.
"""

from __future__ import annotations

import http.client
import importlib.util
import subprocess
from typing import Any, NamedTuple

from iomodels.claims import figures
from iomodels.claims.base import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURABLE,
    PARTLY,
    UNDECIDED,
    Comparison,
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
from iomodels.claims.lab import HOST, Lab, merge, samples
from iomodels.harness import ServerProcess, raise_nofile_limit
from iomodels.webbench import wrk
from iomodels.webbench.runner import HttpSettings
from iomodels.webbench.runner import measure as wrk_measure

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
MEASURES = (
    "HTTP/1.1 web servers `threads` vs `epoll` under wrk (GET /plaintext, keep-alive) at 1, 10, 100, "
    "1000 connections: req/s, p50/p99 latency, server CPU µs/request"
)

MODELS = ("threads", "epoll")
CONNECTIONS = [1, 10, 100, 1000]
# --quick: the fewest and the most (the two halves) and 10, where the manual run saw epoll
# pull ahead; wrk counts whole seconds, so fewer cells is how --quick stays short
QUICK_CONNECTIONS = [1, 10, 1000]
DURATION_S = (1.0, 2.0)  # per wrk run (quick, full)
PATH = "/plaintext"  # TechEmpower's plaintext: the protocol's own cost, no app work
WRK_TIMEOUT_S = 2.0  # a response slower than this is a wrk timeout error, not a latency
WARMUP_REQUESTS = 50  # on one keep-alive connection before the sweep: code paths imported, route checked
FD_HEADROOM = 64  # descriptors each process needs beyond its connections (listener, std, epoll, ...)

# the figures a merged row carries as medians (lab.merge); every repeat is kept beside them
ROW_KEYS = (
    "req_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
    "srv_us_per_req",
    "srv_cpu_pct",
    "errors_total",
)

# verdict thresholds
CLEARLY = 1.10  # ahead: >= 10 % more req/s, or <= 1/1.1 the latency or CPU per request


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    if wrk.wrk_path() is None:
        return not_measurable(f"not measured: {wrk.INSTALL_HINT}")
    why = lab.unavailable(*MODELS)
    if why:
        return not_measurable(why)
    if importlib.util.find_spec("httptools") is None:
        return not_measurable("the http protocol needs httptools: pip install 'iomodels[http]'")
    wanted = QUICK_CONNECTIONS if quick else CONNECTIONS
    duration = DURATION_S[0 if quick else 1]
    # wrk and the server each hold one descriptor per connection: both inherit this limit
    nofile = raise_nofile_limit()
    sizes = [n for n in wanted if n + FD_HEADROOM <= nofile]
    too_many = {
        str(n): f"needs {n + FD_HEADROOM} descriptors, the open-file limit is {nofile}"
        for n in wanted
        if n not in sizes
    }
    if not sizes:
        return not_measurable(f"no connection count fits the open-file limit ({nofile})", skipped=too_many)
    runs = lab.interleave(list(MODELS), lambda model, rep: sweep(lab, model, sizes, duration))
    out: dict[str, Any] = {
        "tool": "wrk",
        "path": PATH,
        "duration_s": duration,
        "nofile": nofile,
        "sizes": sizes,
        "skipped": too_many,
    }
    for model, reps in runs.items():
        out[model] = [merge(list(point), keys=ROW_KEYS) for point in zip(*reps, strict=True)]
    return out


def warm_up(port: int, requests: int = WARMUP_REQUESTS) -> None:
    """GET PATH ``requests`` times on one keep-alive connection; RuntimeError unless every one is 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5.0)
    try:
        for _ in range(requests):
            conn.request("GET", PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {PATH} answered {resp.status} {resp.reason}")
    finally:
        conn.close()


def cell(lab: Lab, server: ServerProcess, connections: int, duration_s: float) -> dict[str, Any]:
    """One wrk run on ``server`` (webbench.runner.measure: wrk pinned away from the server,
    the server's CPU read around it), in the lab's row vocabulary."""
    settings = HttpSettings(targets=[server.model or ""], duration_s=duration_s, path=PATH,
                            timeout_s=WRK_TIMEOUT_S)  # fmt: skip
    got = wrk_measure(server, settings, connections, set(lab.gen_cpus) if lab.gen_cpus else None)
    errors = {k[len("errors_") :]: got[k] for k in got if k.startswith("errors_") and got[k]}
    if not got["requests"]:  # nothing to compare: a failure of the cell, with what wrk saw
        return {"status": "error", "reason": f"no response in the window (wrk errors: {errors or 'none'})"}
    return {
        "status": "ok",
        "requests": got["requests"],
        "window_s": round(got["duration_s"], 3),
        "req_per_s": round(got["rps"], 1),
        "p50_us": got["p50_us"],
        "p90_us": got["p90_us"],
        "p99_us": got["p99_us"],
        "max_us": got["max_us"],
        "srv_us_per_req": None if got["cpu_us_per_req"] is None else round(got["cpu_us_per_req"], 2),
        "srv_cpu_pct": round(100.0 * got["cpu_s"] / got["duration_s"], 1) if got["duration_s"] else None,
        "errors_total": got["errors"],
        "errors": errors,
    }


def sweep(lab: Lab, model: str, sizes: list[int], duration_s: float) -> list[dict[str, Any]]:
    """One HTTP server of ``model``, warmed up; one wrk run per connection count.

    A count that fails is recorded with its reason and the sweep goes on (on a
    fresh server if this one died), so one bad cell costs one cell."""
    rows: list[dict[str, Any]] = []
    server_cm = lab.server(model, protocol="http")
    server = server_cm.__enter__()
    try:
        warm_up(server.port)
        for n in sizes:
            lab.progress(f"{model} (http, wrk): {n} connections")
            if not server.alive():
                server_cm.__exit__(None, None, None)
                server_cm = lab.server(model, protocol="http")
                server = server_cm.__enter__()
            try:
                rows.append({"active": n, "idle": 0, **cell(lab, server, n, duration_s)})
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                rows.append(
                    {"active": n, "idle": 0, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
                )
    finally:
        server_cm.__exit__(None, None, None)
    return rows


# ----------------------------------------------------------------------
# verdict


class Metric(NamedTuple):
    key: str  # in a row
    label: str
    higher_is_better: bool
    unit: str  # how one value is written

    def fmt(self, x: float) -> str:
        if self.unit == "req/s":
            return f"{x / 1000:.1f}k" if x >= 10_000 else f"{x:.0f}"
        if self.unit == "µs":
            return fmt_us(x)
        return f"{x:.1f}"


RPS = Metric("req_per_s", "req/s", True, "req/s")
P50 = Metric("p50_us", "p50", False, "µs")
P99 = Metric("p99_us", "p99", False, "µs")
CPU = Metric("srv_us_per_req", "CPU/request", False, "µs/req")
METRICS = (RPS, P50, P99, CPU)


class Lead(NamedTuple):
    """One figure at one connection count: is either model CLEARLY ahead, in every repeat?"""

    metric: Metric
    epoll: Comparison | None  # epoll against CLEARLY x threads' (1/CLEARLY when lower is better)
    threads: Comparison | None  # the same, the other way round

    @property
    def epoll_ahead(self) -> bool | None:
        return above(self.epoll) if self.metric.higher_is_better else below(self.epoll)

    @property
    def threads_ahead(self) -> bool | None:
        return above(self.threads) if self.metric.higher_is_better else below(self.threads)

    @property
    def winner(self) -> str:
        """ "epoll", "threads", or "-" (neither by CLEARLY, or inside the noise)."""
        return "epoll" if self.epoll_ahead else "threads" if self.threads_ahead else "-"

    @property
    def mark(self) -> str:
        """``winner``, but "epoll?" ("threads?") when that model's median is ahead by CLEARLY
        and its repeats are not clear of the other's: the lead is inside the noise."""
        if self.winner != "-":
            return self.winner
        for side, c in (("epoll", self.epoll), ("threads", self.threads)):
            if c is not None and (c.a.median > c.b.median) == self.metric.higher_is_better:
                return f"{side}?"
        return "-"


def lead(metric: Metric, t_row: dict[str, Any], e_row: dict[str, Any]) -> Lead:
    factor = CLEARLY if metric.higher_is_better else 1 / CLEARLY
    e, t = samples(e_row, metric.key), samples(t_row, metric.key)
    return Lead(metric, compare(e, t, factor), compare(t, e, factor))


def leads(numbers: dict[str, Any]) -> dict[int, dict[str, Lead]]:
    """{connections: {metric key: Lead}} for every count both models served."""
    t = {r["active"]: r for r in numbers.get("threads", []) if r.get("status") == "ok"}
    e = {r["active"]: r for r in numbers.get("epoll", []) if r.get("status") == "ok"}
    return {n: {m.key: lead(m, t[n], e[n]) for m in METRICS} for n in sorted(set(t) & set(e))}


def ahead_from(table: dict[int, dict[str, Lead]]) -> str:
    """Where epoll's req/s leads: 'from 10 connections on', 'at 10 and 1000 connections', or 'nowhere'."""
    counts = list(table)
    ahead = [n for n in counts if table[n][RPS.key].epoll_ahead]
    if not ahead:
        return "at no connection count"
    first = counts.index(ahead[0])
    if ahead == counts[first:]:
        return f"from {ahead[0]} connection{'s' if ahead[0] > 1 else ''} on"
    return "at " + ", ".join(map(str, ahead)) + " connections only"


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    table = leads(numbers)
    if len(table) < 2:
        return Verdict(NOT_MEASURABLE, "-", "fewer than two connection counts ran on both models")
    t = {r["active"]: r for r in numbers["threads"]}
    e = {r["active"]: r for r in numbers["epoll"]}
    few, many = min(table), max(table)
    few_rps, few_p50 = table[few][RPS.key], table[few][P50.key]
    many_rps, many_cpu = table[many][RPS.key], table[many][CPU.key]
    few_rps_key = f"epoll's req/s at {few} connection(s) against {CLEARLY:g}x threads'"
    few_p50_key = f"epoll's p50 at {few} connection(s) against 1/{CLEARLY:g} of threads'"
    rps_key = f"epoll's req/s at {many} connections against {CLEARLY:g}x threads'"
    cpu_key = f"epoll's CPU/request at {many} connections against 1/{CLEARLY:g} of threads'"
    notes = {few_rps_key: few_rps.epoll, few_p50_key: few_p50.epoll, rps_key: many_rps.epoll,
             cpu_key: many_cpu.epoll}  # fmt: skip
    parts = {
        # "not necessarily better": it holds unless epoll is ahead in every repeat
        few_rps_key: few_rps.epoll_ahead is not True,
        few_p50_key: few_p50.epoll_ahead is not True,
        rps_key: many_rps.epoll_ahead,
        cpu_key: many_cpu.epoll_ahead,
    }

    def rule(p: dict[str, bool]) -> str:
        few_not_faster = p[few_rps_key] and p[few_p50_key]
        many_better = p[rps_key] or p[cpu_key]
        if few_not_faster and many_better:
            return HOLDS
        return PARTLY if few_not_faster or many_better else DOES_NOT_HOLD

    d = decide(parts, rule)

    def show(row: dict[str, Any], m: Metric) -> str:
        sp = spread(samples(row, m.key))
        return sp.show(m.fmt) if sp else "n/a"

    def pair(n: int, m: Metric) -> str:
        unit = {"req/s": " req/s", "µs/req": " µs/req"}.get(m.unit, "")
        return f"{m.label} {show(e[n], m)} vs {show(t[n], m)}{unit}"

    def errors(n: int) -> str:
        bad = [f"{model} {r['errors_total']}" for model, r in (("epoll", e[n]), ("threads", t[n]))
               if r.get("errors_total")]  # fmt: skip
        return f" (wrk errors: {', '.join(bad)})" if bad else ""

    where = ahead_from(table)
    key = (
        f"{few} conn, epoll vs threads: {pair(few, RPS)}, {pair(few, P50)}, {pair(few, P99)}{errors(few)}; "
        f"epoll's req/s ahead {where}; {many} conn: {pair(many, RPS)}, {pair(many, P99)}, "
        f"{pair(many, CPU)}{errors(many)}"
    )

    def ratio(n: int) -> str:
        sp_e, sp_t = spread(samples(e[n], RPS.key)), spread(samples(t[n], RPS.key))
        return f"{sp_e.median / sp_t.median:.2f}x" if sp_e and sp_t and sp_t.median else "n/a"

    per_count = "; ".join(
        f"{n}: req/s {ratio(n)} ({table[n][RPS.key].mark}), "
        + ", ".join(f"{m.label} {table[n][m.key].mark}" for m in (P50, P99, CPU))
        for n in table
    )
    few_text = _few_text(few, few_rps, few_p50, table[few][P99.key], table[few][CPU.key])
    story = (
        f"{few_text} epoll's req/s is >= {CLEARLY:g}x threads' {where}. Per connection count, epoll's "
        f"req/s over threads' and who is ahead by {CLEARLY:g}x in every repeat ('epoll?': by the medians "
        f"only, inside the noise; '-': neither): {per_count}."
    )
    skipped = numbers.get("skipped") or {}
    if skipped:
        story += " Not measured: " + "; ".join(f"{n} connections ({why})" for n, why in skipped.items()) + "."
    rule_text = (
        f"Rule: few connections ({few}): epoll is 'not faster' unless its req/s is >= {CLEARLY:g}x threads' "
        f"or its p50 <= 1/{CLEARLY:g} of threads', in every repeat. Many ({many}): epoll's advantage is "
        f">= {CLEARLY:g}x the req/s or <= 1/{CLEARLY:g} the CPU per request, in every repeat."
    )
    margin = closest(
        few_rps.epoll, many_rps.epoll if parts[rps_key] or not parts[cpu_key] else many_cpu.epoll
    )
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, f"{undecided_text(d, notes)} {story} {rule_text}", margin)
    if d.verdict == HOLDS:
        return Verdict(HOLDS, key, f"Both halves hold. {story} {rule_text}", margin)
    if d.verdict == PARTLY:
        few_ok = parts[few_rps_key] and parts[few_p50_key]
        half = "few-connections half" if few_ok else "many-connections half"
        return Verdict(PARTLY, key, f"Only the {half} holds. {story} {rule_text}", margin)
    return Verdict(DOES_NOT_HOLD, key, f"Neither half holds. {story} {rule_text}", margin)


def _few_text(n: int, rps: Lead, p50: Lead, p99: Lead, cpu: Lead) -> str:
    """What holds at the fewest connections, in words."""
    conn = f"{n} connection{'s' if n > 1 else ''}"
    if rps.epoll_ahead or p50.epoll_ahead:
        faster = f"At {conn} epoll is faster than threads ({'req/s' if rps.epoll_ahead else 'p50'})."
    else:
        faster = f"At {conn} epoll is not faster than threads (req/s: {_who(rps)}; p50: {_who(p50)})."
    latency = {
        "epoll": "its p99 is lower",
        "threads": "its p99 is higher, as the text allows",
        "-": "its p99 is not told apart from threads'",
    }[p99.winner]
    return f"{faster} {latency[0].upper()}{latency[1:]}; CPU/request: {_who(cpu)}."


def _who(ld: Lead) -> str:
    return {"epoll": "epoll ahead", "threads": "threads ahead", "-": "neither ahead"}[ld.winner]


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.6))
    panels = [(RPS, "requests/s", 1.0), (P50, "p50 latency (ms)", 1e-3), (P99, "p99 latency (ms)", 1e-3),
              (CPU, "server CPU µs / request", 1.0)]  # fmt: skip
    for ax, (m, label, scale) in zip(axes.flat, panels, strict=True):
        for model in MODELS:
            ok = [r for r in numbers.get(model, []) if r.get("status") == "ok"]
            figures.line(ax, [r["active"] for r in ok], [samples(r, m.key) for r in ok], model, scale=scale)
        ax.set_xscale("log")
        ax.set_xlabel("connections (wrk, keep-alive)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    for ax in axes.flat[1:3]:
        ax.set_yscale("log")
    fig.suptitle(f"Claim 6: HTTP web servers threads vs epoll, wrk GET {numbers.get('path', PATH)} "
                 "(bars: min..max of repeats)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
