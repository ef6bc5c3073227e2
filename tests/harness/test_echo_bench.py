"""bench/echo_bench.py: one short real run fits 120 columns; the profilers' summaries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import profilers  # noqa: E402 (bench/profilers.py)


@pytest.mark.timeout(120)
def test_a_short_run_fits_120_columns_and_names_an_unavailable_model_once(tmp_path):
    argv = [sys.executable, str(BENCH / "echo_bench.py"), "--models", "epoll,kqueue,select:--backlog=64"]
    argv += ["--connections", "4", "--duration", "0.3", "--warmup", "0", "--repeats", "2"]
    argv += ["--json", str(tmp_path / "bench.json"), "--profile-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert max(len(line) for line in lines) <= 120, lines
    kqueue = [line for line in lines if line.startswith("kqueue")]
    if sys.platform == "linux":
        assert len(kqueue) == 1 and "unavailable" in kqueue[0]
    rows = [line.split() for line in lines if line.startswith(("epoll ", "select:"))]
    assert len(rows) == 2 * 2 + 2  # two rounds of two models, then their medians
    assert all(int(r[1]) > 0 for r in rows)  # req/s


def test_strace_summary_per_request(tmp_path):
    out = tmp_path / "strace.txt"
    out.write_text(
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        " 60.00    0.006000           3      2000           sendto\n"
        " 40.00    0.004000           2      2000        12 recvfrom\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.010000           2      4000        12 total\n"
    )
    got = profilers.summarize_strace(out, requests=1000)
    assert got["syscalls"] == 4000 and got["per_request"] == 4.0
    assert got["by_name"] == {"sendto": 2.0, "recvfrom": 2.0}
    lines = profilers.describe({"tool": "strace", **got})
    assert lines[0].startswith("strace: 4000 syscalls / 1000 requests = 4.0 per request")


def test_perfsys_summary_takes_the_total_from_raw_syscalls(tmp_path):
    out = tmp_path / "perf.csv"
    out.write_text(
        "# started on ...\n\n"
        "5000,,raw_syscalls:sys_enter,1000,100.00,,\n"
        "2000,,syscalls:sys_enter_sendto,1000,100.00,,\n"
        "0,,syscalls:sys_enter_futex,1000,100.00,,\n"
    )
    got = profilers.summarize_perfsys(out, requests=1000)
    assert got["syscalls"] == 5000 and got["by_name"] == {"sendto": 2.0}


def test_pyspy_summary_shares(tmp_path):
    out = tmp_path / "pyspy.txt"
    out.write_text(
        "main (/x/a.py:1);loop (/x/b.py:9);send (/x/c.py:3) 3\nmain (/x/a.py:1);loop (/x/b.py:9) 1\n"
    )
    got = profilers.summarize_pyspy(out)
    assert got["samples"] == 4
    assert dict(got["self"]) == {"send (c.py)": 75.0, "loop (b.py)": 25.0}
    assert dict(got["total"])["main (a.py)"] == 100.0


def test_unknown_tool_is_refused():
    with pytest.raises(ValueError, match="unknown profiler"):
        profilers.command("gdb", 1, Path("/tmp/x"), 100)
