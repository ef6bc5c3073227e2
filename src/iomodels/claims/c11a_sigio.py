# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 11a: "signal-driven IO is rarely used in practice".

How often something is used is a fact about the world, not about this
machine: no experiment here can confirm or refute it, so the verdict is
"not measurable" by nature.  What we can show is that the model exists and
serves: the ``sigio`` server answers REQUESTS requests, and strace -c
counts its system calls per request next to ``epoll``'s (what it costs).
Not repeated (issue 13): no verdict rests on these figures.
"""

from __future__ import annotations

from typing import Any

from iomodels.claims.base import NOT_MEASURABLE, Verdict, not_measurable, unmeasurable
from iomodels.claims.lab import STRACE, Lab, connect, parse_strace_summary, roundtrip, traced_requests

ID = "11a"
TITLE = 'signal-driven IO: "rarely used"'
QUOTE_ZH = "signal driven IO       信号驱动IO（在实际中并不常用）"
QUOTE_EN = "signal-driven IO (not commonly used in practice)"
MEASURES = "`sigio` serves; its syscalls per request next to epoll's (usage in practice: not measurable)"


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("sigio")
    if why:
        return not_measurable(why)
    requests = 100 if quick else 500
    out: dict[str, Any] = {"requests": requests}
    lab.progress("sigio: serves?")
    with lab.server("sigio", protocol="upper") as server, connect(server.port) as sock:
        out["upper_reply_ok"] = roundtrip(sock, "hello straße\n".encode()) == b"HELLO STRASSE\n"
    if STRACE is not None:
        for model in ("sigio", "epoll"):
            lab.progress(f"{model}: strace -c on {requests} requests")
            calls = parse_strace_summary(
                traced_requests(lab, model, requests, ["-c"], f"strace-c11-{model}.txt")
            )
            out[model] = {
                "per_request": round(sum(calls.values()) / requests, 3),
                "by_call": {
                    k: round(v / requests, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                },
            }
    return out


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    ok = numbers.get("upper_reply_ok")
    s = numbers.get("sigio")
    cost = (
        f"; {s['per_request']:.2f} syscalls/request vs epoll {numbers['epoll']['per_request']:.2f}"
        if s and "epoll" in numbers
        else ""
    )
    return Verdict(
        NOT_MEASURABLE,
        ("sigio serves correctly" if ok else "sigio did not answer correctly") + cost,
        "How often a technique is used in practice is not a property of this machine, so no "
        "experiment here can give a verdict. Shown instead: the model runs "
        "(a realtime signal per arrival, read in batches from a signalfd) and what it costs per request.",
    )
