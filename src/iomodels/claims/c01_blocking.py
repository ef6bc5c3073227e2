# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 1: blocking IO blocks; an iterative blocking server serves one client at a time.

Experiment: client A connects to ``blocking``, gets one reply, and stays
connected for HOLD_S; OFFSET_S after A, client B connects and sends one
request.  B's reply can only come once A has gone: its wait is the
measurement.  Repeated, alternating the two models.  The same on ``threads`` (a thread per connection) is the
control: there B is answered at once.  That the read blocks in *both*
phases is shown by the trace of claim D (the blocking diagram).
"""

from __future__ import annotations

import time
from typing import Any

from iomodels.claims import figures
from iomodels.claims.base import (
    DOES_NOT_HOLD,
    HOLDS,
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
from iomodels.claims.lab import Lab, connect, roundtrip

ID = "1"
TITLE = "blocking IO: one client at a time"
QUOTE_ZH = (
    "所以，blocking IO的特点就是在IO执行的两个阶段（等待数据和拷贝数据两个阶段）都被block了。"
    "……如在调用recv(1024)的同时，线程将被阻塞，在此期间，线程将无法执行任何运算或响应任何的网络请求。"
)
QUOTE_EN = (
    "So blocking IO is blocked in both phases of the IO (waiting for the data and copying it). "
    "... While recv(1024) is called the thread is blocked, and meanwhile it can neither compute "
    "nor answer any network request."
)
MEASURES = "second client's wait on `blocking` while a first one stays connected (control: `threads`)"

OFFSET_S = 0.1  # B connects this long after A

# verdict thresholds
BLOCKED_FRACTION = 0.8  # B waited at least this share of the time A still held the server
PROMPT_S = 0.1  # an answer within this is "served at once"
# the verdict's parts (what decide() reports when one is inside the noise)
BLOCKED = "B's wait on blocking against the time A held it"
PROMPT = "B's wait on threads against 100 ms"
DELAYED = "B's wait on blocking against 100 ms"


def _second_client_wait(lab: Lab, model: str, hold_s: float) -> float:
    """Seconds from B's send to B's reply, while A stays connected for hold_s."""
    with lab.server(model) as server, connect(server.port) as a:
        roundtrip(a, b"A" * 16)  # A is being served now
        a_leaves = time.monotonic() + hold_s
        time.sleep(OFFSET_S)
        with connect(server.port, timeout_s=hold_s + 10) as b:
            b.sendall(b"B" * 16)
            t0 = time.monotonic()
            got = b""
            while len(got) < 16:
                # read B in short slices, so that A leaves on time
                if a.fileno() != -1 and time.monotonic() >= a_leaves:
                    a.close()
                b.settimeout(0.01 if a.fileno() != -1 else 10)
                try:
                    chunk = b.recv(64)
                except TimeoutError:
                    continue
                if not chunk:
                    raise ConnectionError("B: EOF before its reply")
                got += chunk
            return time.monotonic() - t0


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("blocking", "threads")
    if why:
        return not_measurable(why)
    hold_s = 1.0 if quick else 2.0
    waits = lab.interleave(
        ["blocking", "threads"], lambda model, rep: _second_client_wait(lab, model, hold_s)
    )
    return {
        "hold_s": hold_s,
        "offset_s": OFFSET_S,
        "a_holds_after_b_s": round(hold_s - OFFSET_S, 3),
        "blocking_wait_s": [round(w, 4) for w in waits["blocking"]],  # one per repeat
        "threads_wait_s": [round(w, 4) for w in waits["threads"]],
    }


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    held = numbers["a_holds_after_b_s"]
    bw, tw = numbers["blocking_wait_s"], numbers["threads_wait_s"]
    blocked = against(bw, BLOCKED_FRACTION * held)
    prompt = against(tw, PROMPT_S)
    delayed = against(bw, PROMPT_S)
    notes = {BLOCKED: blocked, PROMPT: prompt, DELAYED: delayed}
    parts = {BLOCKED: above(blocked), PROMPT: below(prompt), DELAYED: above(delayed)}

    def rule(p: dict[str, bool]) -> str:
        if p[BLOCKED] and p[PROMPT]:
            return HOLDS
        return PARTLY if p[BLOCKED] or p[DELAYED] else DOES_NOT_HOLD

    d = decide(parts, rule)
    key = (
        f"B waited {spread(bw).show(lambda x: f'{x:.2f}')} s on blocking (A held it {held:.2f} s more), "
        f"{spread(tw).show(lambda x: f'{1000 * x:.1f}')} ms on threads"
    )
    margin = closest(blocked, prompt)
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, undecided_text(d, notes), margin)
    if d.verdict == HOLDS:
        return Verdict(
            HOLDS,
            key,
            f"In every repeat B's wait on `blocking` was >= {BLOCKED_FRACTION:.0%} of the time A kept "
            f"the connection, while `threads` answered B within {PROMPT_S * 1000:.0f} ms: the only "
            "thread was stuck serving A.",
            margin,
        )
    if d.verdict == PARTLY:
        return Verdict(
            PARTLY,
            key,
            "B was delayed on `blocking`, but not for the whole time A held the server, or the "
            "`threads` control was slow too.",
            margin,
        )
    return Verdict(
        DOES_NOT_HOLD,
        key,
        f"B was answered within {PROMPT_S * 1000:.0f} ms although A was connected.",
        margin,
    )


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.4))
    figures.bars(
        ax,
        ["blocking", "threads"],
        [numbers["blocking_wait_s"], numbers["threads_wait_s"]],
        colours=["#c0392b", "#27ae60"],
        horizontal=True,
    )
    ax.axvline(numbers["a_holds_after_b_s"], color="k", ls="--", lw=1, label="A still connected until")
    ax.set_xlabel("second client's wait for its reply (s; dots: repeats)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Claim 1: a second client while the first stays connected")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
