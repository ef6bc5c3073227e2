"""core/offload.py's WorkerPool without a server: results and errors come
back as Finished, the stop counts what still runs at its deadline, and a
pool used after its stop starts afresh."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from iomodels.core.offload import WorkerPool

pytestmark = pytest.mark.timeout(30)


def test_results_and_errors_come_back_as_finished_outcomes() -> None:
    pool = WorkerPool(2)
    outcomes: queue.SimpleQueue = queue.SimpleQueue()

    def fail() -> None:
        raise ValueError("raised in a worker")

    try:
        pool.run(pow, (2, 10), outcomes.put)
        pool.run(fail, (), outcomes.put)
        got = [outcomes.get(timeout=5), outcomes.get(timeout=5)]
    finally:
        pool.shutdown(time.monotonic() + 5)
    values = [o.result() for o in got if o.exception() is None]
    errors = [o.exception() for o in got if o.exception() is not None]
    assert values == [1024] and [str(e) for e in errors] == ["raised in a worker"]
    assert all(o.done() and not o.cancelled() for o in got)
    with pytest.raises(ValueError):
        next(o for o in got if o.exception() is not None).result()


def test_the_stop_counts_what_still_runs_and_drops_what_waits() -> None:
    pool = WorkerPool(1)
    release = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def block() -> None:
        started.set()
        release.wait(10)
        ran.append("blocked")

    pool.run(block, (), None)
    pool.run(ran.append, ("queued",), None)  # behind the blocked one: dropped by the stop
    assert started.wait(5)
    assert pool.shutdown(time.monotonic() + 0.2) == 1
    release.set()
    done = queue.SimpleQueue()
    pool.run(ran.append, ("after the stop",), done.put)  # a fresh thread
    done.get(timeout=5)
    assert pool.shutdown(time.monotonic() + 5) == 0
    assert "queued" not in ran and "after the stop" in ran
