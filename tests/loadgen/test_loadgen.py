"""The load generator (iomodels bench): counts, checks, errors, loops, merging.

Loopback only; every server and worker is cleaned up (the autouse fixture of
conftest.py fails a test that leaves a process behind).  No assertion on
speed: counts are compared with what the server saw, latencies only where a
1 s stall must (or must not) show.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iomodels.loadgen import hist
from iomodels.loadgen.command import main as bench_main
from iomodels.loadgen.command import parse_cpus, parse_duration
from iomodels.loadgen.engine import ERROR_KINDS, expected_reply, payload
from iomodels.loadgen.runner import LoadConfig, LoadGenerator, aggregate

from helpers import Server

pytestmark = pytest.mark.timeout(90)

MSIZE = 512


def _gen(port: int, **kw) -> LoadGenerator:
    kw.setdefault("msize", MSIZE)
    kw.setdefault("timeout_s", 5.0)
    return LoadGenerator(LoadConfig(host="127.0.0.1", port=port, **kw))


# ---------------------------------------------------------------------------
# counts and checks


def test_counts_match_what_the_server_saw(tiny) -> None:
    """Every request the generator counts, and only those, crossed the server."""
    server = tiny("echo")
    with _gen(server.port, connections=4, idle=3, workers=2) as gen:
        setup = gen.setup(10)
        warm = gen.run(0.2, record=False, drain_s=2)
        result = gen.run(0.5, record=True, drain_s=2)
    seen = server.finish()
    assert setup["idle_alive"] == 3 and setup["active_connected"] == 4
    assert result["errors_total"] == 0 and warm["errors_total"] == 0
    assert result["requests"] > 0
    # idle proofs + warm-up + window, every request drained to its reply
    assert seen["bytes_in"] == MSIZE * (3 + warm["requests"] + result["requests"])
    assert seen["accepted"] == 7
    assert result["latency"]["count"] == result["requests"]  # one sample per request, merged
    assert hist.decode(result["histogram"]).get_total_count() == result["requests"]


@pytest.mark.parametrize("protocol", ["echo", "upper"])
def test_real_server_both_protocols(protocol: str) -> None:
    with (
        Server("epoll", protocol=protocol) as server,
        _gen(server.port, connections=3, protocol=protocol, idle=2) as gen,
    ):
        gen.setup(10)
        result = gen.run(0.3, record=True, drain_s=2)
    assert result["requests"] > 0
    assert result["errors_total"] == 0, result["error_detail"]


def test_upper_expected_reply_is_the_contract() -> None:
    msg = payload(1000)
    assert msg.isascii() and msg != msg.upper()
    contract = msg.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")
    assert expected_reply("upper", msg) == contract
    assert expected_reply("echo", msg) == msg
    with pytest.raises(ValueError):
        expected_reply("upper", "é".encode())


def test_wrong_protocol_is_all_mismatches() -> None:
    """Echo expected, upper served: every reply is counted as a mismatch, none as a request."""
    with Server("epoll", protocol="upper") as server, _gen(server.port, connections=2) as gen:
        gen.setup(10)
        result = gen.run(0.3, record=True, drain_s=2)
    assert result["requests"] == 0
    assert result["errors"]["mismatch"] > 0
    assert result["errors"]["mismatch"] == result["errors_total"]


def test_a_corrupted_byte_is_counted(tiny) -> None:
    server = tiny("corrupt")
    with _gen(server.port, connections=3) as gen:
        gen.setup(10)
        result = gen.run(0.4, record=True, drain_s=2)
    seen = server.finish()
    assert result["requests"] == 0
    # one mismatch per round trip, the stream stays in sync (no reconnect)
    assert result["errors"]["mismatch"] == seen["bytes_in"] // MSIZE > 0
    assert result["errors_total"] == result["errors"]["mismatch"]
    assert seen["accepted"] == 3


# ---------------------------------------------------------------------------
# errors without spinning


def test_server_that_closes_is_counted_and_backed_off(tiny) -> None:
    server = tiny("close")
    with _gen(server.port, connections=5) as gen:
        gen.setup(1)
        result = gen.run(2.0, record=True, drain_s=0.5)
    seen = server.finish()
    assert result["requests"] == 0
    assert result["errors"]["read"] + result["errors"]["write"] > 0
    # back-off 10 ms doubling to 1 s: about 8 attempts per connection in 3 s;
    # a generator that spun would make thousands
    assert result["connects"] <= 5 * 15
    assert seen["accepted"] <= 5 * 20
    assert result["gen_cpu_pct"] < 50  # mostly asleep in epoll_wait


def test_refused_connections_are_counted_and_backed_off() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with _gen(port, connections=3) as gen:
        setup = gen.setup(0.5)
        result = gen.run(1.5, record=True, drain_s=0.2)
    assert setup["errors"]["connect"] > 0
    assert result["errors"]["connect"] > 0 and result["requests"] == 0
    assert setup["connects"] + result["connects"] <= 3 * 15
    assert result["gen_cpu_pct"] < 50


def test_silent_server_times_out(tiny) -> None:
    server = tiny("silent")
    with _gen(server.port, connections=2, timeout_s=0.3) as gen:
        gen.setup(5)
        result = gen.run(1.0, record=True, drain_s=0.2)
    server.finish()
    assert result["requests"] == 0
    assert result["errors"]["timeout"] >= 2
    assert set(result["errors"]) == set(ERROR_KINDS)


# ---------------------------------------------------------------------------
# open loop vs closed loop


def _stalled_run(pid: int, gen: LoadGenerator) -> dict:
    """A 3 s window; the server is stopped from 1 s to 2 s."""
    timers = [
        threading.Timer(1.0, os.kill, (pid, signal.SIGSTOP)),
        threading.Timer(2.0, os.kill, (pid, signal.SIGCONT)),
    ]
    for t in timers:
        t.start()
    try:
        return gen.run(3.0, record=True, drain_s=3)
    finally:
        for t in timers:
            t.join()
        os.kill(pid, signal.SIGCONT)


def test_open_loop_shows_a_stall_the_closed_loop_hides() -> None:
    with Server("epoll", protocol="echo") as server:
        with _gen(server.port, connections=2, msize=64) as gen:
            gen.setup(10)
            closed = _stalled_run(server.pid, gen)
        with _gen(server.port, connections=2, msize=64, rate=400) as gen:
            gen.setup(10)
            opened = _stalled_run(server.pid, gen)
    assert closed["errors_total"] == 0 and opened["errors_total"] == 0
    c, o = closed["latency"], opened["latency"]
    # both saw the stall in their worst request...
    assert c["max_us"] >= 800_000 and o["max_us"] >= 800_000
    # ...but the closed loop sent nothing while it waited: one slow sample per
    # connection among thousands; the open loop counts every request that
    # should have gone out during the stall from its intended send time
    assert c["p99_us"] < 300_000
    assert o["p90_us"] >= 300_000 and o["p99_us"] >= 800_000
    # and the open loop kept its rate (about 400/s over the 3 s)
    assert 0.5 * 1200 <= opened["requests"] <= 1.1 * 1200


# ---------------------------------------------------------------------------
# histograms


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=5 * 10**9), min_size=0, max_size=400),
    st.integers(min_value=1, max_value=5),
    st.randoms(use_true_random=False),
)
def test_merged_histograms_equal_one_histogram(samples: list[int], parts: int, rnd: random.Random) -> None:
    shares: list[list[int]] = [[] for _ in range(parts)]
    for s in samples:
        shares[rnd.randrange(parts)].append(s)
    blobs = [hist.encode(hist.from_latencies_ns(share)) for share in shares]
    merged = hist.merge(blobs)
    single = hist.from_latencies_ns(samples)
    assert merged.get_total_count() == len(samples)
    assert hist.summary(merged) == hist.summary(single)
    for us in {s // 1000 for s in samples}:
        assert merged.get_count_at_value(us) == single.get_count_at_value(us)


def test_aggregate_sums_workers() -> None:
    def part(lat: list[int], requests: int, err: int) -> dict:
        return {
            "requests": requests,
            "bytes_received": requests * 10,
            "wall_s": 1.0,
            "active_s": 1.0,
            "cpu_s": 0.25,
            "errors": {**dict.fromkeys(ERROR_KINDS, 0), "read": err},
            "error_detail": {"read: EOF": err} if err else {},
            "connects": 2,
            "active_connected": 2,
            "idle_alive": 1,
            "late_sends": 0,
            "histogram": hist.encode(hist.from_latencies_ns(lat)),
        }

    total = aggregate([part([1000, 2000], 2, 1), part([3000], 1, 2)])
    assert total["requests"] == 3 and total["req_per_s"] == 3.0
    assert total["errors"]["read"] == 3 and total["error_detail"] == {"read: EOF": 3}
    assert total["latency"]["count"] == 3 and total["latency"]["max_us"] == 3
    assert total["gen_cpu_pct"] == 50.0


# ---------------------------------------------------------------------------
# the command line


def test_bench_command_text_json_and_merge(tiny, capsys, tmp_path) -> None:
    server = tiny("echo")
    common = ["--port", str(server.port), "-c", "2", "-d", "300ms", "--warmup", "0", "--msize", "100"]
    assert bench_main(common) == 0
    text = capsys.readouterr().out
    assert "closed loop" in text and "p99.9" in text and "mismatch 0" in text
    assert bench_main([*common, "-R", "200"]) == 0
    assert "open loop at 200 req/s" in capsys.readouterr().out
    files = []
    for k in range(2):
        assert bench_main([*common, "--json", "--workers", "2"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["config"]["loop"] == "closed" and doc["histogram"]
        path = tmp_path / f"run{k}.json"
        path.write_text(json.dumps(doc))
        files.append((path, doc))
    assert bench_main(["--merge", str(files[0][0]), str(files[1][0]), "--json"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert merged["requests"] == files[0][1]["requests"] + files[1][1]["requests"]
    assert merged["latency"]["count"] == merged["requests"]


def test_bench_against_nothing_exits_1(capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert (
        bench_main(["--port", str(port), "-c", "1", "-d", "0.3", "--warmup", "0", "--setup-timeout", "0.3"])
        == 1
    )
    assert "connect" in capsys.readouterr().out


def test_bench_usage_errors() -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main(["--duration", "soon"])
    assert exc.value.code == 2


def test_parsers() -> None:
    assert parse_duration("10s") == 10 and parse_duration("1m") == 60
    assert parse_duration("500ms") == 0.5 and parse_duration("1.5") == 1.5
    assert parse_cpus("1-3") == {1, 2, 3} and parse_cpus("0,2") == {0, 2}
