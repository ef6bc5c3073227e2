"""Fixtures of the load generator's tests: tiny misbehaving servers, no leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

HERE = Path(__file__).resolve().parent


class Tiny:
    """tiny_server.py in a session of its own; ``finish()`` returns what it saw."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "tiny_server.py"), mode],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        assert ready, "tiny server: no ready line"
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:"), line
        self.port = int(line.rsplit(":", 1)[1])

    def finish(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        return json.loads(out.decode().strip().splitlines()[-1])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def tiny() -> Iterator[Callable[[str], Tiny]]:
    started: list[Tiny] = []

    def start(mode: str) -> Tiny:
        server = Tiny(mode)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test cleans up every process it started (workers, servers)."""
    yield
    me = psutil.Process()
    left = [p for p in me.children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:  # clean up anyway, then fail
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"
