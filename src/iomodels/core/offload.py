"""Work a protocol hands off so that its loop keeps serving: transport.run_in_worker().

The seed: "the event-driven model mixes detecting events and responding to
them: once a response is expensive, it is a disaster for the whole model".
The remedy is to run the expensive part elsewhere and come back to the loop
with the result.  Every transport offers

    transport.run_in_worker(func, *args, done=None)

``func(*args)`` runs on a thread of the server's worker pool
(``--offload-workers``, default 4); then ``done(future)`` runs on the
connection's own loop thread, where the protocol may write; it is not called
if the connection closed meanwhile.  ``future`` is a concurrent.futures
(or asyncio) future: ``future.result()`` returns the value or raises.

In the blocking models the connection already has a thread of its own (or
is the only one served), so the call runs inline on it and ``done`` follows
at once: nothing else waits on that thread.

In CPython, a worker running pure-Python code still shares the GIL with the
loop thread (the loop gets it back every sys.getswitchinterval(), 5 ms):
offloading bounds the loop's stall, it does not remove it.  Work that
releases the GIL (IO, hashlib, zlib, most of numpy) runs truly in parallel.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any


class WorkerPool:
    """A lazily created thread pool: servers that never offload start no thread."""

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max(1, max_workers)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="iomodels-worker"
            )
        return self._executor

    def submit(self, func: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        return self.executor.submit(func, *args)

    def shutdown(self, deadline: float | None = None) -> int:
        """Cancel what has not started; with a ``deadline`` (time.monotonic()),
        wait until then for what runs.  Returns the threads still running."""
        executor = self._executor
        if executor is None:
            return 0
        self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)
        if deadline is None:
            return 0
        threads = list(executor._threads)  # CPython's ThreadPoolExecutor keeps them there
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in threads)


def run_inline(func: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
    """A future already holding ``func(*args)``'s result or exception."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    try:
        future.set_result(func(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


class LoopWorkerMixin:
    """run_in_worker() for the transports of our own loops (readiness, io_uring).

    Needs ``_loop`` (with ``workers`` and ``call_soon_threadsafe``), ``_closed``
    and ``_protocol_error(exc, callback_name)`` on the transport.
    """

    __slots__ = ()

    def run_in_worker(
        self, func: Callable[..., Any], *args: Any, done: Callable[[Any], Any] | None = None
    ) -> None:
        """func(*args) on a worker thread; done(future) back on this loop."""
        loop = self._loop  # type: ignore[attr-defined]
        future = loop.workers.submit(func, *args)
        if done is not None:
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._worker_done, (done, f)))

    def _worker_done(self, item: tuple[Callable[[Any], Any], Any]) -> None:
        done, future = item
        if self._closed:  # type: ignore[attr-defined]
            return  # the connection went meanwhile: nobody to tell
        try:
            done(future)
        except Exception as exc:
            self._protocol_error(exc, "run_in_worker done")  # type: ignore[attr-defined]
