"""claims.json / claims.html from recorded results, and the strace table parser."""

from __future__ import annotations

import base64
import json

import pytest

from iomodels.claims import render
from iomodels.claims.lab import parse_strace_summary

pytestmark = pytest.mark.timeout(20)

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

MACHINE = {
    "nproc": 2,
    "cpu_model": "AMD EPYC",
    "kernel": "6.18.44-fc-v509",
    "os": "Linux-6.18",
    "python": "3.11.7",
    "python_impl": "CPython",
    "mem_total_mib": 24105,
    "loadavg_at_start": [0.5, 0.4, 0.3],
    "versions": {"iomodels": "0.1.0", "matplotlib": "3.9"},
    "summary": "2 CPUs (AMD EPYC), Linux 6.18.44-fc-v509, Python 3.11.7",
}


def result(id_: str, verdict: str, figures: list[str]) -> dict:
    return {
        "id": id_,
        "title": f"claim <{id_}>",
        "quote_zh": "select有一个最大监听事件的限制",
        "quote_en": "select has a limit",
        "measures": "something & more",
        "verdict": verdict,
        "key_figure": "1024 < 2048",
        "explanation": "because",
        "margin": "3 % apart, spread 9 % (inside the noise)",
        "numbers": {"x": 1},
        "elapsed_s": 1.0,
        "budget_s": 60.0,
        "error": None,
        "figures": figures,
    }


def test_json_and_html_from_recorded_results(tmp_path):
    (tmp_path / "claim-7.png").write_bytes(PNG_1PX)
    results = [result("7", "partly", ["claim-7.png"]), result("11a", "not measurable", [])]
    doc = render.document(
        results, command="iomodels claims --quick", quick=True, elapsed_s=12.3, machine=MACHINE, repeats=3
    )
    json_path, html_path = render.write(doc, tmp_path)
    loaded = json.loads(json_path.read_text(encoding="utf-8"))
    assert loaded["verdict_counts"] == {"partly": 1, "not measurable": 1}
    assert loaded["results"][0]["quote_zh"] == "select有一个最大监听事件的限制"
    page = html_path.read_text(encoding="utf-8")
    assert "data:image/png;base64," + base64.b64encode(PNG_1PX).decode() in page  # inlined
    assert 'src="claim-7.png"' not in page  # self-contained
    assert "claim &lt;7&gt;" in page and "1024 &lt; 2048" in page  # escaped
    for fact in ("AMD EPYC", "6.18.44-fc-v509", "3.11.7", "iomodels claims --quick", "<td>2</td>"):
        assert fact in page
    assert "select有一个最大监听事件的限制" in page
    assert loaded["repeats"] == 3
    assert "ran 3 time(s), interleaved" in page
    assert "3 % apart, spread 9 % (inside the noise)" in page  # the margin, in the table and the section


def test_missing_figure_is_said(tmp_path):
    doc = render.document([result("1", "holds", ["gone.png"])], "c", False, 1.0, MACHINE)
    _, html_path = render.write(doc, tmp_path)
    assert "figure gone.png is missing" in html_path.read_text(encoding="utf-8")


def test_parse_strace_summary():
    text = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 50.26    0.000190           0       200           sendto
 26.46    0.000100           0       200         3 epoll_wait
 23.28    0.000088           0       201           recvfrom
------ ----------- ----------- --------- --------- ----------------
100.00    0.000378           0       601         3 total
"""
    assert parse_strace_summary(text) == {"sendto": 200, "epoll_wait": 200, "recvfrom": 201}
