# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""D: the seed's five missing diagrams, drawn from real traces.

For each of ``blocking``, ``nonblocking``, ``epoll`` (multiplexing),
``sigio`` (signal-driven) and ``io_uring`` (asynchronous): a fresh echo
server, ``strace -f -ttt -T -y`` attached, then one client connects, waits
WAIT_S (the server is now "waiting for data"), sends one request and reads
the reply.  The timeline shows every system call of the server as a bar as
long as it was blocked (-T), with the two phases marked: waiting for data
(from the connect to the client's send) and copying it (the read that
returned the bytes; on io_uring the kernel copies before the completion is
reaped, so no read exists).  strace stretches every call, so the widths
are what the process was blocked, measured under the tracer.

The verdict checks each trace against the seed's description of its model.
Not repeated (issue 13): it checks the shape of a trace (which call blocked,
which read copied), not a figure compared against another model's.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, PARTLY, Verdict, not_measurable, unmeasurable
from iomodels.claims.lab import STRACE, Lab, Strace, connect, roundtrip

ID = "D"
TITLE = "the five diagrams, from traces"
QUOTE_ZH = (
    "当用户进程调用了recvfrom这个系统调用，kernel就开始了IO的第一个阶段：准备数据。…… "
    "所以，blocking IO的特点就是在IO执行的两个阶段（等待数据和拷贝数据两个阶段）都被block了。"
)
QUOTE_EN = (
    "When the user process calls recvfrom, the kernel starts the first phase of the IO: preparing the "
    "data ... So blocking IO is blocked in both phases (waiting for the data and copying it). "
    "[and the four other models' diagrams, which the text links but does not include]"
)
MEASURES = "one request per model under strace -f -ttt -T: syscalls, time blocked, the two phases"

MODELS = {
    "blocking": "blocking IO",
    "nonblocking": "non-blocking IO",
    "epoll": "IO multiplexing (epoll)",
    "sigio": "signal-driven IO",
    "io_uring": "asynchronous IO (io_uring)",
}
READS = ("read", "readv", "recvfrom", "recvmsg", "recv")
WAIT_S = 0.3  # the client waits this long between connect and send

# verdict thresholds
BLOCKED_SHARE = 0.8  # a call blocked through at least this share of WAIT_S "waited for the data"
QUICK_COPY_S = 0.005  # a read returning data within this did not wait
POLLS = 10  # non-blocking: at least this many EAGAIN reads while waiting

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
# "= 4 <0.000010>", "= 5<TCP:[...]> <0.000020>" (-y), "= -1 EAGAIN (...) <0.000005>"
TAIL = re.compile(r"=\s+(-?\d+|\?)(?:<\S*>)?(?:\s+(\w+)[^<]*)?(?:\s+<(\d+\.\d+)>)?\s*$")


def parse_trace(text: str) -> list[dict[str, Any]]:
    """strace -f -ttt -T -y lines -> calls {pid, name, start, dur, ret, err, socket}."""
    pending: dict[tuple[int, str], dict[str, Any]] = {}
    calls: list[dict[str, Any]] = []
    for raw in text.splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        r = RESUMED.match(rest)
        if r:
            call = pending.pop((pid, r.group(1)), None)
            if call is None:
                continue
            rest_args = r.group(2)
        else:
            c = CALL.match(rest)
            if not c:
                continue
            call = {
                "pid": pid,
                "name": c.group(1),
                "start": ts,
                "socket": bool(re.match(r"\d+<(TCP|socket)", c.group(2))),
            }
            rest_args = c.group(2)
            if rest_args.endswith("<unfinished ...>"):
                pending[(pid, call["name"])] = call
                continue
        t = TAIL.search(rest_args)
        if not t:
            continue
        call["ret"] = None if t.group(1) == "?" else int(t.group(1))
        call["err"] = t.group(2) if t.group(2) and t.group(2).isupper() else None
        call["dur"] = float(t.group(3)) if t.group(3) else 0.0
        calls.append(call)
    calls.sort(key=lambda c: c["start"])
    return calls


def one_request(lab: Lab, model: str) -> dict[str, Any]:
    with lab.server(model) as server:
        tracer = Strace(server.pid, lab.path(f"trace-{model}.txt"), ["-ttt", "-T", "-y", "-s", "0"])
        try:
            t_connect = time.time()
            with connect(server.port) as sock:
                time.sleep(WAIT_S)
                t_send = time.time()
                roundtrip(sock, b"ping")
                t_reply = time.time()
            time.sleep(0.05)
        finally:
            text = tracer.stop()
    calls = [c for c in parse_trace(text) if t_connect - 0.02 <= c["start"] <= t_reply + 0.05]
    return {"t_connect": t_connect, "t_send": t_send, "t_reply": t_reply, "calls": calls}


def analyse(model: str, trace: dict[str, Any]) -> dict[str, Any]:
    """What the trace shows, in plain numbers."""
    calls = trace["calls"]
    t_send = trace["t_send"]
    reads = [c for c in calls if c["name"] in READS and c["socket"]]
    data_reads = [c for c in reads if (c.get("ret") or 0) > 0 and c["start"] + c["dur"] >= t_send - 0.001]
    copy = data_reads[0] if data_reads else None
    eagain = sum(1 for c in reads if c.get("err") == "EAGAIN")
    waits = [c for c in calls if c["dur"] >= BLOCKED_SHARE * WAIT_S]
    long_wait = max(waits, key=lambda c: c["dur"]) if waits else None
    out = {
        "calls": len(calls),
        "socket_reads": len(reads),
        "eagain_reads": eagain,
        "longest_block": (
            {"name": long_wait["name"], "s": round(long_wait["dur"], 4), "socket": long_wait["socket"]}
            if long_wait
            else None
        ),
        "copy_call": {"name": copy["name"], "s": round(copy["dur"], 6)} if copy else None,
        "io_uring_enter": sum(1 for c in calls if c["name"] == "io_uring_enter"),
    }
    out["matches_text"] = matches(model, out)
    return out


def matches(model: str, a: dict[str, Any]) -> bool:
    """Does the trace look as the seed describes this model?"""
    lw, cp = a["longest_block"], a["copy_call"]
    if model == "blocking":  # one read blocks through both phases
        return bool(
            lw and cp and lw["name"] in READS and lw.get("socket") and cp["s"] >= BLOCKED_SHARE * WAIT_S
        )
    if model == "nonblocking":  # asks again and again, never blocks on a read
        return a["eagain_reads"] >= POLLS and bool(cp) and cp["s"] < QUICK_COPY_S
    if model in ("epoll", "sigio"):  # blocks in the waiting call (epoll_wait; read of the
        # signalfd), not in a socket read, then a quick read copies
        return bool(lw and not lw.get("socket") and cp and cp["s"] < QUICK_COPY_S)
    if model == "io_uring":  # blocks only in io_uring_enter, never reads
        return bool(lw and lw["name"] == "io_uring_enter" and a["socket_reads"] == 0)
    return False


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    if STRACE is None:
        return not_measurable("strace is not installed: no traces, no diagrams")
    out: dict[str, Any] = {"wait_s": WAIT_S, "models": {}, "skipped": {}, "traces": {}}
    for model in MODELS:
        why = lab.unavailable(model)
        if why:
            out["skipped"][model] = why
            continue
        lab.progress(f"{model}: one request under strace")
        trace = one_request(lab, model)
        out["models"][model] = analyse(model, trace)
        # keep the timeline for the figure, capped (the busy loop makes thousands of calls)
        t0 = trace["t_send"]
        out["traces"][model] = {
            "connect_ms": round(1000 * (trace["t_connect"] - t0), 3),
            "reply_ms": round(1000 * (trace["t_reply"] - t0), 3),
            "calls": [
                [
                    c["name"],
                    round(1000 * (c["start"] - t0), 3),
                    round(1000 * c["dur"], 3),
                    int(c["socket"]),
                    c.get("ret"),
                ]
                for c in trace["calls"][:5000]
            ],
        }
    return out


def _call(block: dict[str, Any] | None) -> str:
    if not block:
        return "nothing"
    return block["name"] + (" on a socket" if block.get("socket") else "")


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    drawn = numbers["models"]
    if not drawn:
        return Verdict("not measurable", "-", "no model could be traced")
    ok = [m for m, a in drawn.items() if a["matches_text"]]
    key = f"{len(ok)}/{len(drawn)} traces look as the text describes" + (
        f" (not: {', '.join(m for m in drawn if m not in ok)})" if len(ok) < len(drawn) else ""
    )
    parts = []
    for m, a in drawn.items():
        lw, cp = a["longest_block"], a["copy_call"]
        parts.append(
            f"{m}: blocked longest in {_call(lw)} ({lw['s'] if lw else 0:.3f} s), "
            f"copy in {cp['name'] if cp else 'no read'} ({cp['s'] * 1000 if cp else 0:.2f} ms), "
            f"{a['eagain_reads']} EAGAIN reads"
        )
    rule = (
        f"A call blocked >= {BLOCKED_SHARE:g}x the client's {numbers['wait_s']} s wait "
        "'waited for the data'; "
        f"a read returning data within {QUICK_COPY_S * 1000:g} ms 'only copied'. "
    )
    skipped = "; ".join(f"{m} skipped: {why}" for m, why in numbers.get("skipped", {}).items())
    text = rule + "; ".join(parts) + (". " + skipped if skipped else ".")
    if len(ok) == len(drawn):
        return Verdict(HOLDS, key, text)
    if ok:
        return Verdict(PARTLY, key, text)
    return Verdict(DOES_NOT_HOLD, key, text)


def figure(numbers: dict[str, Any], path: Path) -> list[Path] | bool:
    if numbers.get("not_measurable") or not numbers.get("traces"):
        return False
    import matplotlib.pyplot as plt

    paths = []
    for model, tr in numbers["traces"].items():
        calls = tr["calls"]
        names: list[str] = []
        for name, *_ in calls:
            if name not in names:
                names.append(name)
        fig, (ax, zoom) = plt.subplots(
            1, 2, figsize=(13, 0.45 * len(names) + 2.0), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
        )
        zoom_end = tr["reply_ms"] + 0.2
        for axis, min_w in ((ax, 0.05), (zoom, 0.002)):
            axis.axvspan(tr["connect_ms"], 0, color="#d6eaf8", label="phase 1: waiting for data")
            for name, start, dur, sock, ret in calls:
                y = names.index(name)
                copy = sock and name in READS and (ret or 0) > 0
                colour = "#e67e22" if copy else ("#c0392b" if dur >= 1.0 else "#34495e")
                axis.broken_barh([(start, max(dur, min_w))], (y - 0.35, 0.7), color=colour)
            axis.axvline(0, color="k", lw=1, ls="--", label="client sends")
            axis.axvline(tr["reply_ms"], color="g", lw=1, ls=":", label="client has the reply")
        zoom.set_xlim(-0.2, zoom_end)
        zoom.set_xlabel("zoom: the request (ms)")
        zoom.plot([], [], color="#e67e22", lw=6, label="phase 2: the read that copies the data")
        zoom.plot([], [], color="#c0392b", lw=6, label="a call blocked >= 1 ms")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("ms, relative to the client's send (strace -ttt -T; bars: time inside the call)")
        fig.suptitle(f"{MODELS[model]}: one request ({model})")
        zoom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        out = path.with_name(f"diagram-{model}.png")
        fig.savefig(out, dpi=100)
        plt.close(fig)
        paths.append(out)
    return paths
