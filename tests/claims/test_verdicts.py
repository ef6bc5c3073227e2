"""Each claim's verdict on recorded numbers: every verdict it can give is reachable."""

from __future__ import annotations

import copy

import pytest

from iomodels.claims import registry
from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, NOT_MEASURABLE, PARTLY, VERDICTS
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
        node[leaf] = value
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
    "blocking_wait_s": 0.91,
    "threads_wait_s": 0.0006,
}


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (C1, HOLDS),
        (with_(C1, blocking_wait_s=0.5), PARTLY),
        (with_(C1, threads_wait_s=0.5), PARTLY),
        (with_(C1, blocking_wait_s=0.002), DOES_NOT_HOLD),
    ],
)
def test_c01(numbers, expected):
    assert v1(numbers).verdict == expected


# ---------------------------------------------------------------- 4
C4 = {
    "idle_connections": 10,
    "idle_window_s": 2.0,
    "load_window_s": 1.5,
    "epoll_idle_cpu_pct": 0.0,
    "nonblocking": [
        {"interval_s": 0.0, "idle_cpu_pct": 66.7, "req_per_s": 20626.5, "p50_us": 24, "p99_us": 382},
        {"interval_s": 0.001, "idle_cpu_pct": 3.4, "req_per_s": 883.6, "p50_us": 1091, "p99_us": 3909},
        {"interval_s": 0.01, "idle_cpu_pct": 0.4, "req_per_s": 99.1, "p50_us": 10119, "p99_us": 13671},
    ],
}


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (C4, HOLDS),
        (with_(C4, nonblocking__0__idle_cpu_pct=10.0), PARTLY),
        (with_(C4, nonblocking__2__p50_us=30, nonblocking__2__req_per_s=20000), PARTLY),
        (
            with_(C4, epoll_idle_cpu_pct=40.0, nonblocking__2__p50_us=30, nonblocking__2__req_per_s=20000),
            DOES_NOT_HOLD,
        ),
    ],
)
def test_c04(numbers, expected):
    assert v4(numbers).verdict == expected


# ---------------------------------------------------------------- 5
C5 = {
    "requests": 200,
    "syscalls": {
        "threads": {"per_request": 2.0, "by_call": {"sendto": 1.0, "recvfrom": 1.0}},
        "select": {"per_request": 3.0, "by_call": {"sendto": 1.0, "pselect6": 1.0, "recvfrom": 1.0}},
        "epoll": {"per_request": 3.0, "by_call": {"sendto": 1.0, "epoll_wait": 1.0, "recvfrom": 1.0}},
    },
    "latency": {
        "threads": {"req_per_s": 10400, "p50_us": 41, "p99_us": 2715},
        "select": {"req_per_s": 8654, "p50_us": 44, "p99_us": 2929},
        "epoll": {"req_per_s": 13077, "p50_us": 44, "p99_us": 1632},
    },
}


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (C5, HOLDS),
        (with_(C5, latency__epoll__p50_us=41), PARTLY),
        (with_(C5, syscalls__epoll__per_request=2.0, syscalls__select__per_request=2.0), PARTLY),
        (
            with_(
                C5,
                syscalls__epoll__per_request=2.0,
                syscalls__select__per_request=2.0,
                latency__epoll__p50_us=30,
                latency__select__p50_us=30,
            ),
            DOES_NOT_HOLD,
        ),
        ({**with_(C5, latency__epoll__p50_us=30, latency__select__p50_us=30), "syscalls": {}}, DOES_NOT_HOLD),
    ],
)
def test_c05(numbers, expected):
    assert v5(numbers).verdict == expected


# ---------------------------------------------------------------- 7
C7 = {
    "pointer_bits": 64,
    "rlimit_nofile": 20000,
    "select_refuses_from_fd": 1024,
    "plain": {"tried": 1100, "served": 1018},
    "extra_fds": 600,
    "with_extra": {"tried": 1100, "served": 418},
}


@pytest.mark.parametrize(
    ("numbers", "expected", "word"),
    [
        (C7, PARTLY, "descriptor number"),
        (with_(C7, select_refuses_from_fd=2048), HOLDS, "descriptor number"),
        (with_(C7, pointer_bits=32), HOLDS, "descriptor number"),
        (with_(C7, select_refuses_from_fd=None), DOES_NOT_HOLD, "descriptor number"),
        (with_(C7, with_extra={"tried": 1100, "served": 1018}), PARTLY, "does not track"),
    ],
)
def test_c07(numbers, expected, word):
    v = v7(numbers)
    assert v.verdict == expected
    assert word in v.explanation


# ---------------------------------------------------------------- 8
def c8(rss_per_conn: int, kernel_per_conn: int) -> dict:
    from iomodels.claims.c08_poll_memory import MIB, TARGET

    est = round((16 * MIB + (rss_per_conn + kernel_per_conn) * TARGET) / MIB)
    model = {
        "points": [{"alive": 1000}, {"alive": 15000}],
        "rss_bytes_per_conn": rss_per_conn,
        "kernel_bytes_per_conn": kernel_per_conn,
        "rss_intercept_mib": 16,
        "estimate_100k_mib": est,
        "max_alive": 15000,
    }
    return {
        "sizes": [1000, 15000],
        "rlimit_nofile": 20000,
        "target": TARGET,
        "models": {"poll": model, "epoll": model},
    }


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [(c8(1000, 4700), HOLDS), (c8(8000, 6000), PARTLY), (c8(20000, 5000), DOES_NOT_HOLD)],
)
def test_c08(numbers, expected):
    assert v8(numbers).verdict == expected


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
    assert set(VERDICTS) == {HOLDS, PARTLY, DOES_NOT_HOLD, NOT_MEASURABLE}
