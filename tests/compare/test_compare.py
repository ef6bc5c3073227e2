"""iomodels compare: the report renders from a saved results.json; the runner end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iomodels.compare import main as compare_main
from iomodels.compare.render import text_tables
from iomodels.compare.runner import Settings, skip_reason, summarize
from iomodels.harness import live_descendants
from iomodels.loadgen import hist

pytestmark = pytest.mark.timeout(120)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results_small.json"
PNG = b"\x89PNG\r\n\x1a\n"
CHARTS = ("throughput.png", "cpu_per_request.png", "latency.png", "idle_cost.png")


@pytest.mark.timeout(120)
def test_report_renders_from_saved_results(tmp_path: Path, capsys) -> None:
    assert compare_main(["--render", str(FIXTURE), "--out", str(tmp_path)]) == 0
    for name in CHARTS:
        assert (tmp_path / name).read_bytes().startswith(PNG), name
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(CHARTS)  # self-contained
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    doc = json.loads(FIXTURE.read_text())
    assert doc["command"] in page.replace("&#x27;", "'")
    for needle in ("epoll", "threadpool", "kqueue", "SKIPPED", "nproc", "cpu_model", "kernel", "matplotlib"):
        assert needle in page, needle
    assert "select.kqueue does not exist" in page  # the reason, not a number
    terminal = capsys.readouterr().out
    assert "epoll" in terminal and "SKIPPED" in terminal


def test_text_tables_from_fixture() -> None:
    doc = json.loads(FIXTURE.read_text())
    text = text_tables(doc)
    lines = [ln for ln in text.splitlines() if ln.startswith("blocking")]
    assert any("SKIPPED" in ln for ln in lines)  # blocking with idle connections
    assert any("timeout" in ln for ln in lines)  # blocking with 2 connections: measured, timeouts


def test_skip_reasons() -> None:
    s = Settings(models=[])
    assert skip_reason("epoll", 10, 15000, s) is None
    assert skip_reason("epoll", 1000, 0, s) is None
    assert skip_reason("blocking", 1000, 0, s) is None  # measured: its timeouts are the result
    assert "one connection at a time" in (skip_reason("blocking", 10, 1000, s) or "")
    assert "worker threads" in (skip_reason("threadpool", 10, 1000, s) or "")
    assert "FD_SETSIZE" in (skip_reason("select", 10, 1000, s) or "")
    assert skip_reason("select", 1000, 0, s) is None
    assert "cap" in (skip_reason("processes", 10, 5000, s) or "")
    assert skip_reason("threads", 10, 15000, s) is None  # 15000 threads: measured (~350 MiB)
    assert "cap" in (skip_reason("threads", 10, 20000, s) or "")


def test_summary_medians_and_merged_latency() -> None:
    def cell(rep: int, rps: float, lat_ns: list[int]) -> dict:
        return {
            "model": "epoll",
            "repeat": rep,
            "kind": "grid",
            "connections": 10,
            "idle": 0,
            "status": "ok",
            "req_per_s": rps,
            "srv_us_per_req": rps / 1000,
            "histogram": hist.encode(hist.from_latencies_ns(lat_ns)),
            "errors": {"timeout": rep},
            "note": "",
        }

    skipped = {"model": "kqueue", "repeat": 0, "kind": "grid", "connections": 10, "idle": 0}
    skipped.update(status="skipped", reason="not here")
    rows = summarize(
        [cell(0, 100.0, [1000] * 9), cell(1, 300.0, [2000]), cell(2, 200.0, [5000] * 10), skipped]
    )
    epoll, kqueue = rows
    assert epoll["req_per_s"] == 200.0 and epoll["srv_us_per_req"] == 0.2 and epoll["repeats"] == 3
    assert epoll["latency"]["count"] == 20 and epoll["latency"]["p50_us"] == 2
    assert epoll["errors_total"] == 3
    assert kqueue == {k: v for k, v in skipped.items() if k != "repeat"}


@pytest.mark.timeout(180)
def test_compare_end_to_end(tmp_path: Path, capsys) -> None:
    argv = ["--models", "epoll,blocking", "--connections", "1,3", "--idle-sweep", "5"]
    argv += ["--duration", "0.3s", "--warmup", "0.2s", "--out", str(tmp_path)]
    assert compare_main(argv) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["command"] == "iomodels compare " + " ".join(argv)
    cells = {(c["model"], c["kind"], c["connections"], c["idle"]): c for c in doc["cells"]}
    assert set(cells) == {
        (m, k, a, i)
        for m in ("epoll", "blocking")
        for k, a, i in (("grid", 1, 0), ("grid", 3, 0), ("idle", 10, 5))
    }
    for key in (("epoll", "grid", 1, 0), ("epoll", "grid", 3, 0), ("epoll", "idle", 10, 5)):
        c = cells[key]
        assert c["status"] == "ok" and c["requests"] > 0 and c["errors_total"] == 0, c
        assert c["srv_us_per_req"] > 0 and c["srv_fds"] > 0 and c["srv_rss_mib"] > 0
    assert cells[("epoll", "idle", 10, 5)]["idle_alive"] == 5
    # blocking, 3 connections: one served, two wait in the backlog, counted, bounded
    b3 = cells[("blocking", "grid", 3, 0)]
    assert b3["status"] == "ok" and b3["requests"] > 0 and b3["errors"]["timeout"] >= 2
    skipped = cells[("blocking", "idle", 10, 5)]
    assert skipped["status"] == "skipped" and "one connection at a time" in skipped["reason"]
    assert "req_per_s" not in skipped  # never a made-up number
    assert (tmp_path / "report.html").exists()
    for name in CHARTS:
        assert (tmp_path / name).exists(), name
    assert live_descendants() == []  # every server and generator worker stopped
