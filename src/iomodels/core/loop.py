"""What every event loop of this project shares: a call_soon queue and timers.

Used by the readiness loop (models/_readiness.py) and the completion loop
(models/io_uring.py); the blocking models have no loop, and asyncio/uvloop
bring their own.  The owner sets ``now`` once per loop turn (time.monotonic),
so timers compare against one clock reading per turn, not one per timer.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

Timer = list  # [deadline, seq, callback, active]: a list so that cancel is one store


class CallbackQueue:
    """call_soon / call_later for a single-threaded loop."""

    def __init__(self) -> None:
        self.now = time.monotonic()
        self._ready: deque[tuple[Callable[..., Any], Any]] = deque()  # call_soon queue
        self._timers: list[Timer] = []  # heap of [deadline, seq, callback, active]
        self._timer_seq = itertools.count()  # FIFO among timers with equal deadlines
        self._wake_w: socket.socket | None = None  # set by the owner while its loop runs

    def call_soon(self, callback: Callable[..., Any], arg: Any = None) -> None:
        self._ready.append((callback, arg))

    def call_soon_threadsafe(self, callback: Callable[..., Any], arg: Any = None) -> None:
        """call_soon from another thread: queue, then wake the loop's wait."""
        self._ready.append((callback, arg))  # deque.append is atomic
        wake = self._wake_w
        if wake is not None:
            try:
                wake.send(b"\0")  # the signal wakeup socket: the loop drains it
            except OSError:  # full (a wake-up is already pending) or closing
                pass

    def call_later(self, delay_s: float, callback: Callable[[], Any]) -> Timer:
        timer = [time.monotonic() + delay_s, next(self._timer_seq), callback, True]
        heapq.heappush(self._timers, timer)
        return timer

    @staticmethod
    def cancel_timer(timer: Timer | None) -> None:
        if timer is not None:
            timer[3] = False  # lazily dropped when it reaches the top of the heap

    def _run_timers(self) -> float | None:
        """Run due timers; return seconds until the next one (None: none)."""
        timers = self._timers
        while timers:
            deadline, _, callback, active = timers[0]
            if not active:
                heapq.heappop(timers)
                continue
            if deadline > self.now:
                return deadline - self.now
            heapq.heappop(timers)
            callback()
        return None
