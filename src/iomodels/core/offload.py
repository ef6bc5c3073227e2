"""Work a protocol hands off so that its loop keeps serving: transport.run_in_worker().

The seed: "the event-driven model mixes detecting events and responding to
them: once a response is expensive, it is a disaster for the whole model".
The remedy is to run the expensive part elsewhere and come back to the loop
with the result.  Every transport offers

    transport.run_in_worker(func, *args, done=None)

``func(*args)`` runs on a thread of the server's worker pool
(``--offload-workers``, default 4); then ``done(future)`` runs on the
connection's own loop thread, where the protocol may write; it is not called
if the connection closed meanwhile.  ``future`` is a ``Finished`` (below)
on every event loop, asyncio's and uvloop's included, and a finished
concurrent.futures future in the blocking models: ``future.result()``
returns the value or raises.

In the blocking models the connection already has a thread of its own (or
is the only one served), so the call runs inline on it and ``done`` follows
at once: nothing else waits on that thread.

The event loops' transports (``LoopWorkerMixin``, and models/asyncio.py for
asyncio, uvloop and aio) run the calls on the pool's own threads rather than
a ``ThreadPoolExecutor``: a ``queue.SimpleQueue`` (in C) of jobs, and the
outcome handed back as a ``Finished``, which answers ``result()``,
``exception()``, ``done()`` and ``cancelled()`` as a finished
future does.  The executor's future costs a ``threading.Condition`` per call,
its idle semaphore two more Python-level lock dances, and its done callback a
third, and its idle semaphore decides per call whether to wake a thread.
With a WSGI hello world on the pool (``iomodels compare --app``, 100
connections, the server on one CPU) the server's CPU per request fell from
23.0 to 14.3 us on io_uring and from 30.5 to 18.7 us on epoll (granian's
WSGI: 14.7 and 14.3 in the same runs).
The executor stays for asyncio's ``run_in_executor`` (``WorkerPool.executor``).

In CPython, a worker running pure-Python code still shares the GIL with the
loop thread (the loop gets it back every sys.getswitchinterval(), 5 ms):
offloading bounds the loop's stall, it does not remove it.  Work that
releases the GIL (IO, hashlib, zlib, most of numpy) runs truly in parallel.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from typing import Any


class Finished:
    """A finished call's outcome, with the part of the future API that a
    ``done`` callback uses."""

    __slots__ = ("_value", "_error")

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self._value = value
        self._error = error

    def result(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._error

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False


class WorkerPool:
    """The server's worker threads, started on first use: servers that never
    offload start no thread."""

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max(1, max_workers)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """For asyncio's run_in_executor (the asyncio and uvloop models)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="iomodels-worker"
            )
        return self._executor

    def submit(self, func: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        return self.executor.submit(func, *args)

    def run(self, func: Callable[..., Any], args: tuple, finished: Callable[[Finished], Any] | None) -> None:
        """``func(*args)`` on a pool thread, then ``finished(Finished)`` on that
        thread.  All the threads start with the first call: idle ones wait
        in ``SimpleQueue.get`` (no CPU), and no count of idle threads has to
        be kept right across threads."""
        if not self._threads:
            self._start()
        self._jobs.put((func, args, finished))

    def _start(self) -> None:
        for i in range(self._max_workers):
            # Daemon threads: the stop joins them within its budget (shutdown);
            # one still running after it must not hold the interpreter's exit.
            thread = threading.Thread(target=self._work, name=f"iomodels-worker_{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                return
            func, args, finished = job
            job = None  # the arguments are not kept alive while waiting
            try:
                outcome = Finished(func(*args), None)
            except BaseException as exc:  # as ThreadPoolExecutor: the caller's future carries it
                outcome = Finished(None, exc)
            func = args = None
            if finished is not None:
                try:
                    finished(outcome)
                except Exception:  # the loop is gone (stopping): nobody to tell
                    pass
            outcome = finished = None

    def shutdown(self, deadline: float | None = None) -> int:
        """Drop what has not started; with a ``deadline`` (time.monotonic()),
        wait until then for what runs.  Returns the threads still running.
        A later call starts afresh (new threads, as the executor was new)."""
        executor, self._executor = self._executor, None
        threads, self._threads = self._threads, []
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            threads += list(executor._threads)  # CPython's ThreadPoolExecutor keeps them there
        jobs, self._jobs = self._jobs, queue.SimpleQueue()
        try:
            while True:
                jobs.get_nowait()
        except queue.Empty:
            pass
        for _ in range(len(threads)):
            jobs.put(None)  # one stop per thread: each takes one and returns
        if deadline is None:
            return 0
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
        if done is None:
            loop.workers.run(func, args, None)
            return
        call, worker_done = loop.call_soon_threadsafe, self._worker_done
        loop.workers.run(func, args, lambda outcome: call(worker_done, (done, outcome)))

    def _worker_done(self, item: tuple[Callable[[Any], Any], Any]) -> None:
        done, future = item
        if self._closed:  # type: ignore[attr-defined]
            return  # the connection went meanwhile: nobody to tell
        try:
            done(future)
        except Exception as exc:
            self._protocol_error(exc, "run_in_worker done")  # type: ignore[attr-defined]
