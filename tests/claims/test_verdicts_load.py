"""Verdicts of the load-generator claims (2, 3, 6, 9, 10, 12) and the diagrams, on recorded numbers."""

from __future__ import annotations

import pytest

from iomodels.claims.base import DOES_NOT_HOLD, HOLDS, NOT_MEASURABLE, PARTLY
from iomodels.claims.c02_thread_resources import verdict as v2
from iomodels.claims.c03_pool import verdict as v3
from iomodels.claims.c06_few_connections import verdict as v6
from iomodels.claims.c09_scan_cost import verdict as v9
from iomodels.claims.c10_heavy_request import verdict as v10
from iomodels.claims.c12_async_best import verdict as v12
from iomodels.claims.d_diagrams import matches, parse_trace
from iomodels.claims.d_diagrams import verdict as vd

pytestmark = pytest.mark.timeout(10)


def row(active: int, idle: int = 0, **kw) -> dict:
    base = {
        "active": active,
        "idle": idle,
        "status": "ok",
        "req_per_s": 50000.0,
        "srv_us_per_req": 7.0,
        "srv_pss_mib": 11.0,
        "srv_rss_mib": 16.0,
        "srv_threads": 1,
        "srv_procs": 1,
        "errors_total": 0,
        "p50_us": 60,
        "p99_us": 200,
    }
    return {**base, **kw}


# ---------------------------------------------------------------- 2
def c2(threads_mem: float, threads_cpu: float, procs_mem: float, procs_cpu: float) -> dict:
    return {
        "sizes": [10, 1000],
        "models": {
            "threads": [row(10), row(1000, srv_pss_mib=11 + threads_mem, srv_us_per_req=threads_cpu)],
            "processes": [row(10), row(1000, srv_pss_mib=11 + procs_mem, srv_us_per_req=procs_cpu)],
            "epoll": [row(10), row(1000, srv_pss_mib=11.3, srv_us_per_req=7.0)],
        },
    }


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (c2(80, 18, 1300, 31), HOLDS),
        (c2(80, 7.5, 1300, 7.5), PARTLY),
        (c2(0.3, 7.5, 0.3, 7.5), DOES_NOT_HOLD),
        (
            {"sizes": [10], "models": {"threads": [row(10)], "processes": [row(10)], "epoll": [row(10)]}},
            NOT_MEASURABLE,
        ),
    ],
)
def test_c02(numbers, expected):
    assert v2(numbers).verdict == expected


# ---------------------------------------------------------------- 3
def c3(pool_rps: float, pool_unanswered: int, pool_p99: int) -> dict:
    return {
        "pool_threads": 8,
        "sizes": [4, 32],
        "threadpool": [row(4), row(32, req_per_s=pool_rps, errors_total=pool_unanswered, p99_us=pool_p99)],
        "threads": [row(4), row(32, req_per_s=100000, p99_us=742)],
    }


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (c3(100000, 48, 125), HOLDS),
        (c3(140000, 48, 125), PARTLY),
        (c3(100000, 0, 125), PARTLY),
        (c3(140000, 0, 125), DOES_NOT_HOLD),
        ({**c3(1, 1, 1), "threadpool": [row(4)], "threads": [row(4)]}, NOT_MEASURABLE),
    ],
)
def test_c03(numbers, expected):
    assert v3(numbers).verdict == expected


# ---------------------------------------------------------------- 6
def c6(epoll_few_rps: float, epoll_many_rps: float, epoll_many_cpu: float) -> dict:
    return {
        "sizes": [1, 1000],
        "threads": [row(1, req_per_s=15000), row(1000, req_per_s=42000, srv_us_per_req=19.0)],
        "epoll": [
            row(1, req_per_s=epoll_few_rps),
            row(1000, req_per_s=epoll_many_rps, srv_us_per_req=epoll_many_cpu),
        ],
    }


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (c6(13600, 129000, 7.2), HOLDS),
        (c6(13600, 42000, 18.0), PARTLY),
        (c6(30000, 129000, 7.2), PARTLY),
        (c6(30000, 42000, 19.0), DOES_NOT_HOLD),
    ],
)
def test_c06(numbers, expected):
    assert v6(numbers).verdict == expected


# ---------------------------------------------------------------- 9
def c9(select_top: float, poll_top: float, epoll_top: float) -> dict:
    return {
        "active": 10,
        "idle": [0, 900, 5000],
        "select": [row(10, 0, srv_us_per_req=6.0), row(10, 900, srv_us_per_req=select_top)],
        "poll": [row(10, 0, srv_us_per_req=6.0), row(10, 5000, srv_us_per_req=poll_top)],
        "epoll": [row(10, 0, srv_us_per_req=6.0), row(10, 5000, srv_us_per_req=epoll_top)],
    }


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (c9(18, 60, 6.4), HOLDS),
        (c9(18, 60, 12), PARTLY),
        (c9(6.2, 60, 6.4), PARTLY),
        (c9(6.2, 6.3, 12), DOES_NOT_HOLD),
        ({**c9(1, 1, 1), "epoll": [row(10, 0)]}, NOT_MEASURABLE),
    ],
)
def test_c09(numbers, expected):
    assert v9(numbers).verdict == expected


# ---------------------------------------------------------------- 10
def c10(epoll_p99: int, threads_p99: int, offload_p99: int | None = 6000) -> dict:
    numbers = {
        "burn_ms": 50.0,
        "light": 4,
        "epoll": {"alone": row(4, p99_us=66), "with_heavy": row(4, p99_us=epoll_p99)},
        "threads": {"alone": row(4, p99_us=80), "with_heavy": row(4, p99_us=threads_p99)},
    }
    if offload_p99 is not None:
        numbers["epoll_offload"] = {"alone": row(4, p99_us=70), "with_heavy": row(4, p99_us=offload_p99)}
    return numbers


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (c10(102655, 8103), HOLDS),
        (c10(102655, 90000), PARTLY),
        (c10(3000, 8103), DOES_NOT_HOLD),
        (c10(102655, 8103, offload_p99=None), HOLDS),  # a record from before the offload variant
    ],
)
def test_c10(numbers, expected):
    v = v10(numbers)
    assert v.verdict == expected
    if "epoll_offload" in numbers:
        assert "worker pool" in v.key_figure  # the remedy's figure is shown beside the verdict


# ---------------------------------------------------------------- 12
def c12(io_uring: float) -> dict:
    return {
        "connections": 100,
        "models": {
            "uvloop": row(100, srv_us_per_req=5.69),
            "io_uring": row(100, srv_us_per_req=io_uring),
            "epoll": row(100, srv_us_per_req=6.88),
            "asyncio": row(100, srv_us_per_req=24.2),
        },
        "skipped": {"blocking": "serves 1"},
    }


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (c12(5.5), HOLDS),
        (c12(5.81), PARTLY),
        (c12(9.0), DOES_NOT_HOLD),
        ({**c12(5.5), "models": {"epoll": row(100)}}, NOT_MEASURABLE),
    ],
)
def test_c12(numbers, expected):
    assert v12(numbers).verdict == expected


# ---------------------------------------------------------------- D
TRACE = """\
101 1700000000.000100 accept4(3<TCP:[127.0.0.1:80]>, NULL, NULL, SOCK_CLOEXEC) = 5<TCP:[1->2]> <0.000020>
101 1700000000.000200 recvfrom(5<TCP:[127.0.0.1:80->127.0.0.1:9]>, ""..., 65536, 0, NULL, NULL) = 4 <0.300100>
102 1700000000.000300 epoll_wait(4<anon_inode:[eventpoll]>,  <unfinished ...>
101 1700000000.300400 sendto(5<TCP:[127.0.0.1:80->127.0.0.1:9]>, ""..., 4, 0, NULL, 0) = 4 <0.000010>
102 1700000000.300500 <... epoll_wait resumed>[], 64, 1000) = 0 <0.300200>
101 1700000000.300600 recvfrom(5<TCP:[1->2]>, 0x7f, 65536, 0, NULL, NULL) = -1 EAGAIN (Resource...) <0.000005>
"""


def test_parse_trace():
    calls = parse_trace(TRACE)
    assert [c["name"] for c in calls] == ["accept4", "recvfrom", "epoll_wait", "sendto", "recvfrom"]
    assert calls[1]["ret"] == 4 and calls[1]["socket"] and calls[1]["dur"] == pytest.approx(0.3001)
    assert calls[2]["dur"] == pytest.approx(0.3002)  # unfinished + resumed joined
    assert calls[4]["err"] == "EAGAIN"


def block(name: str, s: float, socket: bool) -> dict:
    return {"name": name, "s": s, "socket": socket}


def test_matches_each_model():
    quick_copy = {"name": "recvfrom", "s": 0.00001}
    base = {"eagain_reads": 0, "socket_reads": 2, "io_uring_enter": 0}
    assert matches(
        "blocking",
        {**base, "longest_block": block("recvfrom", 0.3, True), "copy_call": {"name": "recvfrom", "s": 0.3}},
    )
    assert not matches(
        "blocking", {**base, "longest_block": block("epoll_wait", 0.3, False), "copy_call": quick_copy}
    )
    assert matches(
        "nonblocking", {**base, "eagain_reads": 1500, "longest_block": None, "copy_call": quick_copy}
    )
    assert matches(
        "epoll", {**base, "longest_block": block("epoll_wait", 0.3, False), "copy_call": quick_copy}
    )
    assert matches("sigio", {**base, "longest_block": block("read", 0.3, False), "copy_call": quick_copy})
    assert matches(
        "io_uring",
        {**base, "socket_reads": 0, "longest_block": block("io_uring_enter", 0.3, False), "copy_call": None},
    )
    assert not matches(
        "io_uring", {**base, "longest_block": block("io_uring_enter", 0.3, False), "copy_call": quick_copy}
    )


def test_diagrams_verdict():
    a_ok = {
        "matches_text": True,
        "eagain_reads": 0,
        "longest_block": block("epoll_wait", 0.3, False),
        "copy_call": {"name": "recvfrom", "s": 1e-5},
    }
    a_bad = {**a_ok, "matches_text": False}
    assert vd({"wait_s": 0.3, "models": {"epoll": a_ok, "blocking": a_ok}}).verdict == HOLDS
    assert vd({"wait_s": 0.3, "models": {"epoll": a_ok, "blocking": a_bad}}).verdict == PARTLY
    assert vd({"wait_s": 0.3, "models": {"epoll": a_bad}}).verdict == DOES_NOT_HOLD
    assert vd({"not_measurable": "strace is not installed"}).verdict == NOT_MEASURABLE
