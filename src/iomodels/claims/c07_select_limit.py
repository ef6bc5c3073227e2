# ruff: noqa: RUF001 - the quotes are the seed's exact Chinese, full-width punctuation included
"""Claim 7: select's limit, found on this machine, and what it bounds.

Experiment, part 1 (in this process): find the smallest descriptor *number*
``select.select`` refuses, by dup2()ing a socket onto candidate numbers
(binary search up to RLIMIT_NOFILE), and the word size.  Part 2: start a
``select`` server twice, once as is and once with EXTRA_FDS extra descriptors
inherited (``pass_fds``, so they take the low numbers), and open TRY
connections at once, one request each: count the ones answered.  If the
limit bounded the *count* of watched descriptors, the inherited ones (never
watched) would change nothing; if it bounds the *number*, about EXTRA_FDS
fewer connections are served.  Part 2 is repeated, the two servers
alternating; part 1 is an exact probe, done once.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from typing import Any

from iomodels.claims import figures
from iomodels.claims.base import (
    DOES_NOT_HOLD,
    HOLDS,
    PARTLY,
    Verdict,
    median,
    not_measurable,
    spread,
    unmeasurable,
)
from iomodels.claims.lab import Lab, count_served

ID = "7"
TITLE = "select is limited to 1024/2048 descriptors"
QUOTE_ZH = "select有一个最大监听事件的限制，32位机限制1024，6位机限制2048"
QUOTE_EN = (
    'select has a maximum number of watched events: 1024 on 32-bit machines, 2048 on "6"(4)-bit machines'
)
MEASURES = (
    "smallest fd number select() refuses; connections served by `select` with and without extra inherited fds"
)

# the seed's figures by pointer width
SEED_LIMIT = {32: 1024, 64: 2048}
EXTRA_FDS = 600

# verdict threshold: the served count drops by the inherited fds within this share
TRACKS_NUMBER = 0.1


def select_accepts(fd_number: int) -> bool:
    """Does select.select take a descriptor with this number?  (dup2 a socket onto it.)"""
    with socket.socket() as sock:
        try:
            os.dup2(sock.fileno(), fd_number)
        except OSError:
            return False  # above RLIMIT_NOFILE
        try:
            select.select([fd_number], [], [], 0)
            return True
        except ValueError:
            return False
        finally:
            os.close(fd_number)


def find_limit(upper: int) -> int | None:
    """The smallest fd number select refuses, below ``upper``; None if none."""
    lo = 3
    if select_accepts(upper - 1):
        return None
    hi = upper - 1  # refused
    while lo + 1 < hi:  # invariant: lo accepted, hi refused
        mid = (lo + hi) // 2
        if _free(mid) and select_accepts(mid):
            lo = mid
        elif _free(mid):
            hi = mid
        else:
            lo = mid  # in use: skip it (only low numbers are in use)
    return hi


def _free(fd: int) -> bool:
    try:
        os.fstat(fd)
        return False
    except OSError:
        return True


def run(lab: Lab, quick: bool) -> dict[str, Any]:
    why = lab.unavailable("select")
    if why:
        return not_measurable(why)
    lab.progress("probing select.select with high fd numbers")
    limit = find_limit(lab.nofile)  # in this process, exact: not repeated
    bits = struct.calcsize("P") * 8
    tries = 1100 if quick else 1500
    deadline_s = 5.0
    out: dict[str, Any] = {"pointer_bits": bits, "rlimit_nofile": lab.nofile, "select_refuses_from_fd": limit}
    extra: list[int] = []
    try:
        while len(extra) < EXTRA_FDS:
            extra.append(os.open(os.devnull, os.O_RDONLY))
        out["extra_fds"] = len(extra)
        out["extra_fd_max"] = max(extra)

        def serve(key: str, rep: int) -> dict[str, Any]:
            fds = tuple(extra) if key == "with_extra" else ()
            with lab.server("select", protocol="echo", pass_fds=fds) as server:
                return {"server_fds": len(server.fds()), **count_served(server.port, tries, deadline_s)}

        runs = lab.interleave(["plain", "with_extra"], serve)
    finally:
        for fd in extra:
            os.close(fd)
    for key, reps in runs.items():
        out[key] = {
            "tried": tries,
            "served": int(median([r["served"] for r in reps])),
            "repeats": reps,
        }
    return out


def _served(d: dict[str, Any]) -> list[int]:
    return [r["served"] for r in d.get("repeats", [d])]


def verdict(numbers: dict[str, Any]) -> Verdict:
    if (v := unmeasurable(numbers)) is not None:
        return v
    bits = numbers["pointer_bits"]
    limit = numbers["select_refuses_from_fd"]
    seed = SEED_LIMIT.get(bits)
    plain, with_extra = _served(numbers["plain"]), _served(numbers["with_extra"])
    extra = numbers["extra_fds"]
    drops = [a - b for a, b in zip(plain, with_extra, strict=False)]
    drop = spread(drops)
    tracking = [abs(d - extra) <= TRACKS_NUMBER * extra for d in drops]
    p, w = spread(plain), spread(with_extra)
    counts = lambda x: f"{x:.0f}"  # noqa: E731
    if all(tracking):
        bound = (
            f"It bounds the descriptor number, not the count: with {extra} extra inherited descriptors "
            f"(never watched) the server answered {drop.show(counts)} fewer of the same connections "
            f"({p.show(counts)} -> {w.show(counts)}), in every repeat."
        )
    elif not any(tracking):
        bound = (
            f"With {extra} extra inherited descriptors it answered {p.show(counts)} -> {w.show(counts)} "
            f"connections (drop {drop.show(counts)}), which does not track the descriptor number within "
            f"{TRACKS_NUMBER:.0%}."
        )
    else:
        bound = (
            f"With {extra} extra inherited descriptors the drop in answered connections "
            f"({drop.show(counts)}) tracked the descriptor number in {sum(tracking)} of {len(drops)} "
            "repeats only: inside the noise (this part does not enter the verdict)."
        )
    margin = f"served {p.show(counts)} vs {w.show(counts)} over {len(drops)} repeats; the limit is exact"
    if limit is None:
        key = f"no limit found up to fd {numbers['rlimit_nofile']}"
        return Verdict(
            DOES_NOT_HOLD,
            key,
            f"select accepted every descriptor number below RLIMIT_NOFILE. {bound}",
            margin,
        )
    key = (
        f"select refuses fd >= {limit} on this {bits}-bit machine (seed: {seed}); "
        f"{extra} inherited fds -> {drop.show(counts)} fewer served"
    )
    if limit == seed:
        return Verdict(HOLDS, key, f"The limit is the seed's figure for {bits}-bit. {bound}", margin)
    return Verdict(
        PARTLY,
        key,
        f"There is a limit, but it is {limit}, not the seed's {seed} for a {bits}-bit machine: it is "
        f"FD_SETSIZE, fixed at 1024 by glibc on 32- and 64-bit alike (CPython checks it in "
        f"select.select). {bound}",
        margin,
    )


def figure(numbers: dict[str, Any], path) -> bool:
    if numbers.get("not_measurable"):
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3))
    labels = ["as started", f"+{numbers['extra_fds']} inherited fds"]
    served = [_served(numbers["plain"]), _served(numbers["with_extra"])]
    figures.bars(ax, labels, served, colours=["#2980b9", "#c0392b"])
    ax.axhline(numbers["plain"]["tried"], color="k", ls=":", lw=1, label=f"{numbers['plain']['tried']} tried")
    if numbers.get("select_refuses_from_fd"):
        ax.axhline(numbers["select_refuses_from_fd"], color="gray", ls="--", lw=1, label="FD_SETSIZE")
    for i, vals in enumerate(served):
        ax.text(i, max(vals), spread(vals).show(lambda x: f"{x:.0f}"), ha="center", va="bottom")
    ax.set_ylabel("connections answered by select")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Claim 7: select bounds the descriptor number (dots: repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
