"""iomodels compare --server-workers N runs every model as serve --workers N."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from iomodels.compare.command import _settings, build_parser
from iomodels.webbench import wrk


def test_echo_settings_carry_the_server_workers_and_unpin_the_server() -> None:
    one = _settings(build_parser().parse_args(["--models", "epoll"]))
    assert one.server_workers == 0
    two = _settings(build_parser().parse_args(["--models", "epoll", "--server-workers", "2"]))
    assert two.server_workers == 2 and two.server_cpu is None
    with pytest.raises(ValueError, match="--server-workers"):
        _settings(build_parser().parse_args(["--models", "epoll", "--server-workers", "none"]))


@pytest.mark.skipif(wrk.wrk_path() is None, reason=wrk.INSTALL_HINT)
def test_http_compare_runs_a_model_with_two_workers(tmp_path) -> None:
    argv = [sys.executable, "-m", "iomodels", "compare", "--protocol", "http", "--models", "epoll"]
    argv += ["--peers", "none", "--server-workers", "2", "--connections", "10", "--duration", "1s"]
    argv += ["--warmup", "0", "--out", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["settings"]["server_args"] == ["--workers", "2"]
    (cell,) = doc["cells"]
    assert cell["target"] == "epoll" and cell["requests"] > 100 and cell["errors"] == 0
