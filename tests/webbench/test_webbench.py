"""wrk and the peers: the clients and servers of the HTTP comparison that we did not write."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from iomodels.webbench import peers, runner, wrk

needs_wrk = pytest.mark.skipif(wrk.wrk_path() is None, reason=wrk.INSTALL_HINT)

SAMPLE = (
    "Running 1s test\n"
    'IOMODELS_WRK {"requests":1200,"duration_us":1000000,"bytes":150000,"connect":1,"read":2,"write":0,'
    '"status":3,"timeout":4,"p50_us":210,"p90_us":400,"p99_us":900,"max_us":5000,"mean_us":250.5}\n'
)


def test_parse_output_reads_our_result_line():
    r = wrk.parse_output(SAMPLE)
    assert (r.requests, r.duration_s, r.p50_us, r.p99_us, r.max_us) == (1200, 1.0, 210, 900, 5000)
    assert r.errors == 1 + 2 + 3 + 4
    assert r.rps == 1200.0


def test_parse_output_without_result_line_says_so():
    with pytest.raises(ValueError, match="no result line"):
        wrk.parse_output("Running 1s test\nunable to connect to 127.0.0.1:1 Connection refused\n")


def test_command_pipelines_the_path_and_refuses_nonsense():
    argv = wrk.command(
        "http://127.0.0.1:8080/json", connections=4, duration_s=2, pipeline=16, script_path="s"
    )
    assert argv[-2:] == ["16", "/json"] and "-c4" in argv and "-t1" in argv
    with pytest.raises(ValueError):
        wrk.command("http://127.0.0.1:1/", connections=0, duration_s=1, script_path="s")


def test_summary_takes_medians_and_ratios_to_the_floor():
    def cell(target, kind, cpu, rps):
        return {"target": target, "kind": kind, "connections": 100, "rps": rps, "p50_us": 100,
                "p99_us": 900, "cpu_us_per_req": cpu, "errors": 0}  # fmt: skip

    cells = [
        cell("nginx", "peer", 5.0, 9e4),
        cell("nginx", "peer", 7.0, 8e4),
        cell("nginx", "peer", 6.0, 1e5),
        cell("epoll", "model", 30.0, 2e4),
        cell("uvicorn", "peer", 24.0, 2.5e4),
        {"target": "kqueue", "kind": "model", "connections": 100, "skipped": "Linux has no kqueue"},
    ]
    rows = {r["target"]: r for r in runner.summarize(cells)}
    assert rows["nginx"]["cpu_us_per_req"] == 6.0 and rows["nginx"]["runs"] == 3
    assert rows["epoll"]["cpu_vs_nginx"] == pytest.approx(5.0)
    assert rows["epoll"]["cpu_vs_uvicorn"] == pytest.approx(1.25)
    assert rows["kqueue"]["note"] == "Linux has no kqueue"
    text = runner.table(list(rows.values()))
    assert "Linux has no kqueue" in text and max(map(len, text.splitlines())) <= 120


def test_unknown_target_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="nginx"):
        runner.kind_of("apache")


@pytest.mark.parametrize("name", peers.names())
def test_each_installed_peer_serves_the_hello_world_and_leaves_nothing(name):
    peer = peers.get(name)
    ok, why = peer.available()
    if not ok:
        pytest.skip(why)
    with tempfile.TemporaryDirectory() as scratch:
        server = runner.PeerProcess(peer, cpu=None, scratch=Path(scratch)).start()
        try:
            assert runner.http_get_ok(server.host, server.port, "/plaintext")
            assert server.cpu_seconds() > 0
            pids = server.group_pids()
            assert server.pid in pids
        finally:
            server.stop()
        assert server.group_pids() == []


@needs_wrk
def test_wrk_measures_nginx_without_errors():
    peer = peers.get("nginx")
    ok, why = peer.available()
    if not ok:
        pytest.skip(why)
    with tempfile.TemporaryDirectory() as scratch:
        server = runner.PeerProcess(peer, cpu=None, scratch=Path(scratch)).start()
        try:
            row = runner.measure(server, runner.HttpSettings(targets=["nginx"], duration_s=1), 8, None)
        finally:
            server.stop()
    assert row["requests"] > 100 and row["errors"] == 0
    assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]
    assert row["cpu_us_per_req"] > 0


@needs_wrk
def test_compare_http_runs_a_model_beside_a_peer_and_writes_its_files(tmp_path):
    """The CLI end to end, as small as it goes: one model, one peer, one cell each."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "iomodels", "compare", "--protocol", "http", "--models", "epoll",
         "--peers", "nginx", "--connections", "4", "--duration", "1s", "--warmup", "0s",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    rows = {r["target"]: r for r in doc["summary"]}
    assert rows["epoll"]["rps"] > 0 and rows["epoll"]["errors"] == 0
    if peers.get("nginx").available()[0]:
        assert rows["nginx"]["errors"] == 0 and "cpu_vs_nginx" in rows["epoll"]
    else:
        assert "not installed" in rows["nginx"]["note"]
    assert "epoll" in (tmp_path / "table.txt").read_text() and "epoll" in done.stdout


def test_compare_http_refuses_an_unknown_peer():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "iomodels", "compare", "--protocol", "http", "--peers", "apache"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "apache" in done.stderr and "nginx" in done.stderr
