# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 10: the event-driven model mixes detecting events and responding to them.

Experiment: a server with the ``Burn`` protocol (claims/protocols.py: echo,
but a request starting with HEAVY costs 50 ms of CPU inside data_received).
LIGHT connections in a closed loop (64-byte echo) measure their latency,
first alone, then while one more client sends HEAVY requests back to back.
On ``epoll`` the heavy handler runs on the loop's only thread, so every
light request behind it waits; on ``threads`` it runs on its own thread
(CPython's GIL still switches every 5 ms, sys.getswitchinterval()).
The third variant hands the heavy work to the server's worker pool
(``transport.run_in_worker``, core/offload.py: BurnOffloaded) on the same
epoll server: the loop keeps serving, and the worker's pure-Python CPU still
competes for the GIL, which the loop gets back every 5 ms.  One server per
variant and repeat, the variants interleaved.
"""

from __future__ import annotations

import multiprocessing as mp
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
    compare,
    decide,
    fmt_us,
    median,
    not_measurable,
    spread,
    undecided_text,
    unmeasurable,
)
from iomodels.claims.lab import Lab, connect, roundtrip, trim
from iomodels.claims.protocols import BURN_S, HEAVY

ID = "10"
TITLE = "event loop: a heavy response is a disaster"
QUOTE_ZH = "其次，该模型将事件探测和事件响应夹杂在一起，一旦事件响应的执行体庞大，则对整个模型是灾难性的。"
QUOTE_EN = (
    "Second, the model mixes detecting events and responding to them: once the body of a response "
    "is large, it is a disaster for the whole model."
)
MEASURES = (
    "light clients' p99 while one request burns 50 ms of CPU: epoll, threads, and epoll with the work "
    "offloaded to a worker pool"
)

PROTOCOL = "iomodels.claims.protocols:Burn"
OFFLOAD_PROTOCOL = "iomodels.claims.protocols:BurnOffloaded"
MODELS = ("epoll", "threads")
# (key in the numbers, model, protocol)
VARIANTS = (
    ("epoll", "epoll", PROTOCOL),
    ("threads", "threads", PROTOCOL),
    ("epoll_offload", "epoll", OFFLOAD_PROTOCOL),
)
LABELS = {"epoll": "epoll", "threads": "threads", "epoll_offload": "epoll + worker pool"}
LIGHT = 4

# verdict thresholds
HURT = 0.5  # epoll's light p99 under heavy load >= this share of the burn: light requests waited
SPARED = 0.5  # threads' light p99 at most this share of epoll's: the other model spares them
HURT_KEY = f"epoll's light p99 against {HURT:g}x the burn"
SPARED_KEY = f"threads' light p99 against {SPARED:g}x epoll's"


class HeavyClient:
    """A child process sending HEAVY requests back to back until stopped.

    A process, not a thread: the load generator used to fork its workers
    from this process while this client ran, and a fork while another thread
    sits in getaddrinfo() or any libc lock leaves the child deadlocked (seen
    here: the worker never answered).  The workers now come from a fork
    server; a process still keeps this client off the lab's CPU-time books."""

    def __init__(self, port: int) -> None:
        ctx = mp.get_context("fork")
        self.port = port
        self._sent = ctx.Value("i", 0)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=self._run, args=(port, self._sent, self._stop), daemon=True)
        self.error: str | None = None

    @staticmethod
    def _run(port: int, sent, stop) -> None:
        msg = HEAVY + b"-" * 59
        with connect(port, timeout_s=10) as sock:
            while not stop.is_set():
                roundtrip(sock, msg)
                with sent.get_lock():
                    sent.value += 1

    @property
    def sent(self) -> int:
        return self._sent.value

    def __enter__(self) -> HeavyClient:
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        if self._proc.exitcode not in (0, None):
            self.error = f"heavy client exited with {self._proc.exitcode}"


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable(*MODELS)
    if why:
        return not_measurable(why)
    duration = 0.6 if quick else 2.0  # >= 12 heavy requests of 50 ms per window
    out: dict[str, Any] = {"burn_ms": BURN_S * 1000, "light": LIGHT}
    variants = {key: (model, protocol) for key, model, protocol in VARIANTS}

    def one(key: str, rep: int) -> dict[str, Any]:
        model, protocol = variants[key]
        with lab.server(model, protocol=protocol) as server:
            lab.progress(f"{LABELS[key]}: light clients alone")
            alone = trim(lab.load(server, LIGHT, duration_s=duration, msize=64))
            lab.progress(f"{LABELS[key]}: light clients + one heavy client")
            with HeavyClient(server.port) as heavy:
                loaded = trim(lab.load(server, LIGHT, duration_s=duration, msize=64))
        return {
            "alone": alone,
            "with_heavy": loaded,
            "heavy_requests": heavy.sent,
            "heavy_error": heavy.error,
        }

    for key, reps in lab.interleave(list(variants), one).items():
        out[key] = {
            "alone": {"p99_us": median([r["alone"]["p99_us"] for r in reps])},
            "with_heavy": {"p99_us": median([r["with_heavy"]["p99_us"] for r in reps])},
            "heavy_requests": [r["heavy_requests"] for r in reps],
            "repeats": reps,
        }
    return out


def p99s(variant: dict[str, Any], phase: str) -> list[float]:
    """The light clients' p99 in every repeat of one variant and phase."""
    return [r[phase]["p99_us"] or 0 for r in variant.get("repeats", [variant])]


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    burn_us = numbers["burn_ms"] * 1000
    e = p99s(numbers["epoll"], "with_heavy")
    t = p99s(numbers["threads"], "with_heavy")
    e0 = p99s(numbers["epoll"], "alone")
    offload = numbers.get("epoll_offload")
    hurt = against(e, HURT * burn_us)
    spared = compare(t, e, SPARED)
    notes = {HURT_KEY: hurt, SPARED_KEY: spared}
    parts = {HURT_KEY: above(hurt), SPARED_KEY: below(spared)}

    def rule(p: dict[str, bool]) -> str:
        if p[HURT_KEY] and p[SPARED_KEY]:
            return HOLDS
        return PARTLY if p[HURT_KEY] else DOES_NOT_HOLD

    d = decide(parts, rule)
    show = lambda vals: spread(vals).show(fmt_us)  # noqa: E731
    key = f"light p99 with a 50 ms request: epoll {show(e)} (alone {show(e0)}), threads {show(t)}"
    if offload:
        key += f", epoll + worker pool {show(p99s(offload, 'with_heavy'))}"
    rule_text = (
        f"Thresholds: epoll's light p99 >= {HURT:g}x the burn ({fmt_us(HURT * burn_us)}) means the light "
        f"requests waited for the heavy one; threads' <= {SPARED:g}x epoll's means another model spares "
        "them; each in every repeat. The worker-pool variant is the remedy, shown for comparison; it "
        "does not enter the verdict."
    )
    margin = closest(hurt, spared)
    if d.verdict == UNDECIDED:
        return Verdict(UNDECIDED, key, undecided_text(d, notes) + " " + rule_text, margin)
    lead = {
        HOLDS: "The heavy handler stalled the event loop, not the threads. ",
        PARTLY: "epoll stalled, but threads were hurt as much (the GIL). ",
        DOES_NOT_HOLD: "Light requests did not wait for the heavy one on epoll. ",
    }[d.verdict]
    return Verdict(d.verdict, key, lead + rule_text, margin)


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    keys = [key for key, _, _ in VARIANTS if key in numbers]
    for k, (phase, colour) in enumerate((("alone", "#27ae60"), ("with_heavy", "#c0392b"))):
        figures.bars(
            ax,
            [LABELS[key] for key in keys],
            [p99s(numbers[m], phase) for m in keys],
            colours=colour,
            scale=1e-3,
            offset=0.38 * k,
            width=0.38,
            label=phase.replace("_", " "),
        )
    ax.axhline(numbers["burn_ms"], color="k", ls="--", lw=1, label="one heavy request's CPU")
    ax.set_ylabel(f"p99 of {numbers['light']} light clients (ms)")
    ax.legend(fontsize=8)
    ax.set_title("Claim 10: one 50 ms request among light ones (dots: repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
