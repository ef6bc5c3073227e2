"""Fixtures of the load generator's tests: tiny misbehaving servers, no leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from signal import SIGKILL

import pytest

from iomodels.harness import ServerProcess, live_descendants

HERE = Path(__file__).resolve().parent


class Tiny(ServerProcess):
    """tiny_server.py through the harness; ``finish()`` returns what it saw."""

    def __init__(self, mode: str) -> None:
        super().__init__(command=[sys.executable, str(HERE / "tiny_server.py"), mode], ready_timeout_s=15)
        self.start()

    def finish(self) -> dict[str, int]:
        status = self.stop(timeout_s=10)
        assert status == 0, f"tiny server exited with {status}: {self.log_text()}"
        return json.loads(self.log_text().strip().splitlines()[-1])

    def kill(self) -> None:
        self.stop(SIGKILL, 0)


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
    left = live_descendants()
    for pid in left:  # clean up anyway, then fail
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"
