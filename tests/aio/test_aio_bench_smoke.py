"""bench/aio_bench.py runs: its quickest mode on this loop, output parsed.

A benchmark never asserts speed (STYLE: benchmarks are separate and never
assert); this test only proves that the command the integrator re-runs after
each change to iomodels.aio still starts its servers on the loop, drives them,
reads their CPU and prints a table: protocol echo (loadgen), uvicorn (wrk and
the uvicorn command line with --loop iomodels.aio:new_event_loop) where uvicorn
and wrk are installed, and the call_soon / timer micro costs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from iomodels import aio
from iomodels.harness import live_descendants
from iomodels.webbench import wrk

ok, why = aio.available()
if not ok:
    pytest.skip(why, allow_module_level=True)

BENCH = Path(__file__).resolve().parents[2] / "bench" / "aio_bench.py"


def test_quick_run_on_uring_prints_positive_figures(tmp_path):
    workloads = ["protocol", "micro"]
    if importlib.util.find_spec("uvicorn") and importlib.util.find_spec("httptools") and wrk.wrk_path():
        workloads.insert(1, "uvicorn")  # the custom-loop path of uvicorn, where it can run
    out = tmp_path / "aio.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--loops", "uring", "--only", ",".join(workloads),
         "--duration", "1", "--warmup", "0.2", "--micro-n", "5000", "--json", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    cells = report["cells"]
    assert [(c["workload"], c["loop"]) for c in cells] == [(w, "uring") for w in workloads]
    for cell in cells:
        if cell["workload"] == "micro":
            assert all(cell[k] > 0 for k in ("soon", "soon*1k", "timer", "timer*1k")), cell
        else:
            assert cell["requests"] > 0 and cell["errors"] == 0, cell
            assert cell["us_per_req"] > 0 and cell["req_per_s"] > 0, cell
    # the table: one median row per workload, under its header
    medians = done.stdout.split("medians over", 1)[1].splitlines()
    for w in workloads:
        assert any(line.split()[:2] == [w, "uring"] for line in medians), done.stdout
    assert live_descendants() == []
