"""threadpool: blocking IO on a fixed pool of ``--threads`` workers (default 8).

Waiting for data: each of the N workers loops: block in accept(), then serve
  that connection to its end, blocked in recv().  Client N+1 waits in the
  kernel's listen backlog until a worker is free: the pool caps threads and
  memory, and queues the excess (the seed: "when requests greatly exceed the
  cap, the pool responds no better than no pool").
Copying it: inside recv(), on the worker's thread.
What to watch when measuring: latency of client N+1 (it includes whole
  sessions of others), and that cost does not grow past N threads.
Facts that shaped this code:
  - All workers block in accept() on the same listening socket; the kernel
    hands each new connection to one of them (no thundering herd for
    blocking accept() since Linux 2.6), so no queue is needed in user space.
  - The main thread only waits for a signal: it reads the wakeup pipe that
    the C-level signal handler writes to (signal.set_wakeup_fd).
"""

from __future__ import annotations

import os
import signal
import threading

from iomodels.models._blocking import BlockingServer


class Server(BlockingServer):
    name = "threadpool"

    def run(self) -> None:
        workers = [
            threading.Thread(
                target=self.accept_loop, args=(self.serve_connection,), name=f"pool-{i}", daemon=True
            )
            for i in range(max(1, self.config.threads))
        ]
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            for worker in workers:
                worker.start()
            while not self._stopping:
                os.read(wake_r, 512)  # returns once a signal has arrived (and its handler ran)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)
        self.join_threads(workers)
