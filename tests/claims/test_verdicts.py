"""Each claim's verdict on recorded numbers: every verdict it can give is reachable."""

from __future__ import annotations

import copy

import pytest

from iomodels.claims import registry
from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, NOT_MEASURABLE, PARTLY, UNDECIDED, VERDICTS
from iomodels.claims.c01_blocking import verdict as v1
from iomodels.claims.c04_busy_polling import verdict as v4
from iomodels.claims.c05_syscalls import verdict as v5
from iomodels.claims.c07_select_limit import verdict as v7
from iomodels.claims.c08_poll_memory import verdict as v8
from iomodels.claims.c11a_sigio import verdict as v11a
from iomodels.claims.c11b_async import verdict as v11b

pytestmark = pytest.mark.timeout(10)

UNMEASURABLE = {"not_measurable": "model x is not available here: because"}


def with_(base: dict, **changes) -> dict:
    """A deep copy of ``base`` with dotted-path keys replaced ("a.b.c": v)."""
    out = copy.deepcopy(base)
    for path, value in changes.items():
        node = out
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(leaf) if isinstance(node, list) else leaf] = value
    return out


def test_registry_modules_are_claims():
    ids = []
    for claim in registry.claims():
        for attr in ("ID", "TITLE", "QUOTE_ZH", "QUOTE_EN", "MEASURES", "run", "verdict"):
            assert hasattr(claim, attr), (claim.__name__, attr)
        ids.append(claim.ID)
        assert claim.verdict(UNMEASURABLE).verdict == NOT_MEASURABLE
        assert "because" in claim.verdict(UNMEASURABLE).explanation
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- 1
C1 = {
    "hold_s": 1.0,
    "offset_s": 0.1,
    "a_holds_after_b_s": 0.9,
    "blocking_wait_s": [0.91, 0.9, 0.905],
    "threads_wait_s": [0.0006, 0.0005, 0.0009],
}


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (C1, HOLDS),
        (with_(C1, blocking_wait_s=[0.5, 0.45, 0.52]), PARTLY),
        (with_(C1, threads_wait_s=[0.5, 0.4, 0.6]), PARTLY),
        (with_(C1, blocking_wait_s=[0.002, 0.003, 0.002]), DOES_NOT_HOLD),
        # one repeat of the control was slow: HOLDS or PARTLY depends on the noise
        (with_(C1, threads_wait_s=[0.0006, 0.0005, 0.3]), UNDECIDED),
    ],
)
def test_c01(numbers, expected):
    v = v1(numbers)
    assert v.verdict == expected
    assert v.margin  # every verdict states its margin
    if expected == UNDECIDED:
        assert "inside the noise" in v.explanation and "threads" in v.explanation


# ---------------------------------------------------------------- 4
def c4_row(interval: float, idle_cpu: list, rps: list, p50: list) -> dict:
    return {
        "interval_s": interval,
        "repeats": [
            {"idle_cpu_pct": c, "idle_demand_pct": 100.0, "req_per_s": r, "p50_us": p}
            for c, r, p in zip(idle_cpu, rps, p50, strict=True)
        ],
    }


C4 = {
    "idle_connections": 10,
    "idle_window_s": 1.0,
    "load_window_s": 0.6,
    "epoll_idle_cpu_pct": [0.0, 0.1, 0.0],
    "nonblocking": [
        c4_row(0.0, [66.7, 90.0, 98.0], [20626, 30000, 39000], [24, 22, 30]),
        c4_row(0.01, [0.4, 0.5, 0.3], [99, 98, 99], [10119, 10100, 10150]),
    ],
}


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (C4, HOLDS),
        (with_(C4, nonblocking__0__repeats__0__idle_cpu_pct=10.0), UNDECIDED),  # 10 .. 98 % straddles 25 %
        (
            with_(
                C4,
                **{f"nonblocking__0__repeats__{k}__idle_cpu_pct": 10.0 for k in range(3)},
            ),
            PARTLY,
        ),
        (
            with_(
                C4,
                epoll_idle_cpu_pct=[40.0, 41.0, 42.0],
                nonblocking__1=c4_row(0.01, [0.4] * 3, [20000] * 3, [30] * 3),
            ),
            DOES_NOT_HOLD,
        ),
    ],
)
def test_c04(numbers, expected):
    v = v4(numbers)
    assert v.verdict == expected
    assert "(" in v.key_figure  # the range of the repeats is shown


# ---------------------------------------------------------------- 5
def lat(*p50: float) -> dict:
    return {"p50_us": sorted(p50)[len(p50) // 2], "repeats": [{"p50_us": x} for x in p50]}


def calls(*per_request: float) -> dict:
    return {
        "per_request": per_request[0],
        "by_call": {"sendto": 1.0, "recvfrom": 1.0},
        "repeats": [{"per_request": x} for x in per_request],
    }


C5 = {
    "requests": 200,
    "syscalls": {"threads": calls(2, 2, 2), "select": calls(3, 3, 3), "epoll": calls(3, 3.01, 3)},
    # the numbers: threads 58, select 63, epoll 59 µs, inside each other's noise
    "latency": {"threads": lat(58, 55, 61), "select": lat(63, 60, 66), "epoll": lat(59, 57, 60)},
}


@pytest.mark.parametrize(
    ("numbers", "expected", "word"),
    [
        (C5, HOLDS, "narrowly"),  # two calls counted; their cost inside the noise
        (with_(C5, latency__epoll=lat(80, 82, 81), latency__select=lat(90, 91, 92)), HOLDS, "clearly slower"),
        (with_(C5, latency__epoll=lat(40, 41, 42)), PARTLY, "faster all the same"),
        (with_(C5, syscalls__epoll=calls(2, 2, 2), syscalls__select=calls(2, 2, 2)), PARTLY, "no extra"),
        (
            with_(
                C5,
                syscalls__epoll=calls(2, 2, 2),
                syscalls__select=calls(2, 2, 2),
                latency__epoll=lat(30, 31, 32),
                latency__select=lat(30, 31, 32),
            ),
            DOES_NOT_HOLD,
            "Neither",
        ),
        (with_(C5, syscalls__epoll=calls(2, 3, 3)), UNDECIDED, "overlap"),  # a count that moved
        ({**with_(C5, latency__epoll=lat(30, 31, 32)), "syscalls": {}}, DOES_NOT_HOLD, "latency"),
    ],
)
def test_c05(numbers, expected, word):
    v = v5(numbers)
    assert v.verdict == expected
    assert word in v.explanation


def test_c05_states_the_margin_of_the_narrow_case():
    v = v5(C5)
    assert "% apart, spread" in v.margin and "inside the noise" in v.margin


# ---------------------------------------------------------------- 7
def served(*n: int) -> dict:
    return {"tried": 1100, "served": n[0], "repeats": [{"served": x} for x in n]}


C7 = {
    "pointer_bits": 64,
    "rlimit_nofile": 20000,
    "select_refuses_from_fd": 1024,
    "plain": served(1018, 1018, 1017),
    "extra_fds": 600,
    "with_extra": served(418, 418, 417),
}


@pytest.mark.parametrize(
    ("numbers", "expected", "word"),
    [
        (C7, PARTLY, "descriptor number"),
        (with_(C7, select_refuses_from_fd=2048), HOLDS, "descriptor number"),
        (with_(C7, pointer_bits=32), HOLDS, "descriptor number"),
        (with_(C7, select_refuses_from_fd=None), DOES_NOT_HOLD, "descriptor number"),
        (with_(C7, with_extra=served(1018, 1018, 1018)), PARTLY, "does not track"),
        (with_(C7, with_extra=served(418, 1018, 418)), PARTLY, "in 2 of 3 repeats only"),
    ],
)
def test_c07(numbers, expected, word):
    v = v7(numbers)
    assert v.verdict == expected
    assert word in v.explanation


# ---------------------------------------------------------------- 8
def c8(*per_conn: tuple[int, int]) -> dict:
    """One fit per repeat: (user, kernel) bytes per connection."""
    from iomodels.claims.c08_poll_memory import MIB, TARGET

    fits = [
        {
            "rss_bytes_per_conn": rss,
            "kernel_bytes_per_conn": kernel,
            "rss_intercept_mib": 16,
            "estimate_100k_mib": round((16 * MIB + (rss + kernel) * TARGET) / MIB),
            "max_alive": 15000,
        }
        for rss, kernel in per_conn
    ]
    model = {"points": [{"alive": 1000}, {"alive": 15000}], **fits[0], "repeats": fits}
    return {
        "sizes": [1000, 15000],
        "rlimit_nofile": 20000,
        "target": TARGET,
        "models": {"poll": model, "epoll": model},
    }


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (c8((1000, 4700), (1100, 4600), (900, 5000)), HOLDS),
        (c8((8000, 6000), (8100, 6000), (7900, 6100)), PARTLY),
        (c8((20000, 5000), (21000, 5000), (19000, 5200)), DOES_NOT_HOLD),
        # one repeat's estimate above 1 GiB, the others below: inside the noise
        (c8((1000, 4700), (1000, 10000), (1000, 4800)), UNDECIDED),
    ],
)
def test_c08(numbers, expected):
    v = v8(numbers)
    assert v.verdict == expected
    if expected == UNDECIDED:
        assert "1 GiB is inside the noise" in v.explanation


def test_c08_fit_is_least_squares():
    from iomodels.claims.c08_poll_memory import fit

    assert fit([1, 2, 3], [3, 5, 7]) == pytest.approx((1.0, 2.0))


# ---------------------------------------------------------------- 11
def test_c11a_is_never_given_a_verdict():
    v = v11a(
        {
            "requests": 100,
            "upper_reply_ok": True,
            "sigio": {"per_request": 3.0},
            "epoll": {"per_request": 3.0},
        }
    )
    assert v.verdict == NOT_MEASURABLE
    assert "serves correctly" in v.key_figure
    assert v11a({"upper_reply_ok": False}).verdict == NOT_MEASURABLE


C11B = {
    "requests": 100,
    "upper_reply_ok": True,
    "io_uring": {"socket_reads_per_req": 0.0, "io_uring_enter_per_req": 2.01},
    "epoll": {"socket_reads_per_req": 1.0, "io_uring_enter_per_req": 0.0},
}


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (C11B, DOES_NOT_HOLD),
        (with_(C11B, io_uring__socket_reads_per_req=1.0), PARTLY),
        (
            {"requests": 100, "upper_reply_ok": True, "trace_not_measurable": "strace is not installed"},
            PARTLY,
        ),
        (with_(C11B, upper_reply_ok=False), NOT_MEASURABLE),
    ],
)
def test_c11b(numbers, expected):
    assert v11b(numbers).verdict == expected


def test_c11b_counts_socket_reads_only():
    from iomodels.claims.c11b_async import count_calls

    trace = "\n".join(
        [
            '123  read(7<TCP:[127.0.0.1:5->127.0.0.1:6]>, "x", 10) = 1',
            '123  read(3</dev/null>, "", 10) = 0',
            "123  io_uring_enter(4<anon_inode:[io_uring]>, 1, 1, IORING_ENTER_GETEVENTS, NULL, 8) = 1",
            '124  recvfrom(9<socket:[77]>, "x", 10, 0, NULL, NULL) = 1',
            "123  <... io_uring_enter resumed>) = 1",
        ]
    )
    calls = count_calls(trace)
    assert calls["socket_reads"] == 2
    assert calls["io_uring_enter"] == 1
    assert calls["read"] == 2


def test_verdict_names():
    assert set(VERDICTS) == {HOLDS, PARTLY, DOES_NOT_HOLD, UNDECIDED, NOT_MEASURABLE}
