# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 11b: "asynchronous IO: Python cannot implement it".

Experiment: run the ``io_uring`` model (completion-based, our ctypes ring in
``uring.py``, standard library only) on REQUESTS sequential echo requests
under ``strace -f -y`` (every call of every thread, descriptors annotated),
and count the read-family calls (read, readv, recv*, on a socket) against
``io_uring_enter``; ``epoll`` under the same trace is the control.  If the
server never calls a read on a client socket, the kernel did both phases,
waiting and copying, on its own: asynchronous IO, from Python.  Not
repeated (issue 13): the verdict rests on counts of calls in a trace, which are
exact (0 socket reads against 1 per request), not on a time.
"""

from __future__ import annotations

import re
from typing import Any

from iomodels.claims.base import DOES_NOT_HOLD, NOT_MEASURABLE, PARTLY, Verdict, not_measurable, unmeasurable
from iomodels.claims.lab import STRACE, Lab, roundtrip, traced_requests

ID = "11b"
TITLE = 'asynchronous IO: "Python cannot"'
QUOTE_ZH = "asynchronous IO       异步IO（python实现不了，但是有tornado框架天生自带异步）"
QUOTE_EN = "asynchronous IO (Python cannot implement it, but the tornado framework is asynchronous by nature)"
MEASURES = "`io_uring` serves; read calls on client sockets vs io_uring_enter under strace (control: epoll)"

READ_CALLS = ("read", "readv", "recvfrom", "recvmsg", "recvmmsg", "recv", "preadv", "preadv2")
CALL_RE = re.compile(r"^\d+\s+(\w+)\((\d+)(<[^>]*>)?")

# verdict thresholds
MAX_SOCKET_READS_PER_REQ = 0.01  # (practically) never reads a socket itself
MIN_ENTERS_PER_REQ = 0.5  # and waits through io_uring_enter
BROKEN = (
    "Our io_uring model did not answer correctly: that is a bug here, not evidence that Python "
    "cannot do asynchronous IO, so no verdict."
)


def count_calls(trace: str) -> dict[str, int]:
    """{syscall: n, 'socket_reads': n}: read-family calls on a socket descriptor."""
    calls: dict[str, int] = {"socket_reads": 0}
    for line in trace.splitlines():
        m = CALL_RE.match(line)
        if not m:
            continue
        name = m.group(1)
        calls[name] = calls.get(name, 0) + 1
        if name in READ_CALLS and m.group(3) and ("TCP" in m.group(3) or "socket" in m.group(3)):
            calls["socket_reads"] += 1
    return calls


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("io_uring")
    if why:
        return not_measurable(why)
    requests = 100 if quick else 500
    out: dict[str, Any] = {"requests": requests}
    lab.progress("io_uring: serves?")
    with lab.server("io_uring", protocol="upper") as server:
        from iomodels.claims.lab import connect

        with connect(server.port) as sock:
            out["upper_reply_ok"] = roundtrip(sock, "hello straße\n".encode()) == b"HELLO STRASSE\n"
    if STRACE is None:
        out["trace_not_measurable"] = "strace is not installed"
        return out
    for model in ("io_uring", "epoll"):
        lab.progress(f"{model}: strace -f -y on {requests} requests")
        calls = count_calls(traced_requests(lab, model, requests, ["-y"], f"strace-y-{model}.txt"))
        out[model] = {
            "calls": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
            "socket_reads_per_req": round(calls["socket_reads"] / requests, 3),
            "io_uring_enter_per_req": round(calls.get("io_uring_enter", 0) / requests, 3),
        }
    return out


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    serves = numbers.get("upper_reply_ok", False)
    if "io_uring" not in numbers:
        why = numbers.get("trace_not_measurable", "no trace")
        if serves:
            return Verdict(
                PARTLY,
                "io_uring serves; not traced",
                f"A completion-based server in Python serves correctly, but {why}: "
                "cannot show that it never reads a socket itself.",
            )
        return Verdict(NOT_MEASURABLE, "io_uring did not serve", BROKEN)
    u = numbers["io_uring"]
    ctrl = numbers.get("epoll", {}).get("socket_reads_per_req")
    key = (
        f"io_uring: {u['socket_reads_per_req']:.2f} socket reads and {u['io_uring_enter_per_req']:.2f} "
        f"io_uring_enter per request (epoll: {ctrl} socket reads)"
    )
    asynchronous = (
        u["socket_reads_per_req"] <= MAX_SOCKET_READS_PER_REQ
        and u["io_uring_enter_per_req"] >= MIN_ENTERS_PER_REQ
    )
    if serves and asynchronous:
        return Verdict(
            DOES_NOT_HOLD,
            key,
            "Python (standard library + ctypes) runs a server on io_uring that serves correctly and "
            "never calls read/recv on a client socket: the kernel waits for the data and copies it, and "
            "the process only submits and reaps completions. The seed's claim was true of Python's "
            "standard library in its time (no io_uring before Linux 5.1, 2019), not of the language.",
        )
    if serves:
        return Verdict(
            PARTLY,
            key,
            f"io_uring serves, but the trace shows socket reads (> {MAX_SOCKET_READS_PER_REQ}/request) "
            f"or few io_uring_enter calls (< {MIN_ENTERS_PER_REQ}/request).",
        )
    return Verdict(NOT_MEASURABLE, key, BROKEN)
