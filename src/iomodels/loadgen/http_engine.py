"""The engine speaking HTTP/1.1: keep-alive, pipelining, every response checked.

What changes from the echo engine (engine.py), and only that: a round trip is
  a *batch* of ``pipeline`` requests sent in one write (the same bytes each
  time, built once), complete when all its responses have been read, in order,
  by the connection's ``ResponseParser`` (http_wire.py).  Connecting, back-off,
  timeouts, open and closed loops, phases and histograms are the echo
  engine's, inherited.
Latency: one sample per response, from the send of its batch (for a batch of
  one, its request).  wrk also counts from the batch's write, but records one
  sample per batch, when its last response arrives.  The next batch goes out
  as soon as the last response is read, so every connection always has a
  batch in flight and the mean latency is Little's law's connections x
  pipeline / rate (10.06 ms measured, 10.08 ms predicted, 100 x 16 at 158 700
  req/s).  wrk writes the next batch one loop turn later (it arms
  AE_WRITABLE in response_complete), so its connections are idle part of the
  time and its latencies are lower at the same rate: 5.9 ms mean where Little
  predicts 9.3 ms.  Without pipelining the gap is within noise
  (bench/crosscheck.py --against wrk; figures in its docstring).
Errors: a response that is wrong (``status``: not 2xx; ``mismatch``: another
  body than the route's; ``malformed``: not HTTP/1.1, or more responses than
  requests) is counted and the connection closed and re-opened after the
  back-off: after a bad response the stream cannot be trusted.  The responses
  of the same batch read before it still count.  A correct response with
  ``Connection: close`` counts, and the connection is re-opened at once
  without an error (a server may close keep-alive connections); requests of
  its batch left unanswered then count as ``read`` errors.
Hot path: ``_run_load`` is the echo engine's loop with the reply check
  replaced by ``parser.feed``; it is a copy, not a hook, because a method call
  per event is what the echo loop was inlined to avoid.
"""

from __future__ import annotations

import time

from iomodels.loadgen.engine import (
    _IN,
    _OUT,
    DOWN,
    DRAIN_CHECK_NS,
    GOOD,
    HOUSEKEEPING_NS,
    INCOMPLETE,
    INFLIGHT,
    PRIMING,
    READY,
    RECV_SIZE,
    PhaseStats,
    Worker,
    WorkerConfig,
    payload,
)
from iomodels.loadgen.http_wire import (
    ParseCache,
    ResponseError,
    ResponseParser,
    build_request,
    expected_body,
    host_header,
)


class HttpWorker(Worker):
    """All HTTP connections of one load-generator process."""

    def __init__(self, config: WorkerConfig) -> None:
        if config.pipeline < 1:
            raise ValueError("pipeline must be >= 1")
        super().__init__(config)
        self.pipeline = config.pipeline
        self._cache = ParseCache()  # shared by every connection of this worker
        expected = self.expected_body
        head_request = config.method == "HEAD"
        self._parsers = [ResponseParser(expected, head_request, self._cache) for _ in range(self.n)]
        self._outstanding = [0] * self.n  # responses still due in the current batch
        self._nbytes = 0  # bytes received in this phase
        if self._open_loop:  # the schedule is per batch; --rate counts requests
            self._interval_ns = int(1e9 * config.active * self.pipeline / config.rate)

    def _messages(self, config: WorkerConfig) -> tuple[bytes, bytes]:
        body = payload(config.msize) if config.method == "POST" else b""
        request = build_request(config.method, config.path, host_header(config.host, config.port), body)
        self.expected_body = expected_body(config.method, config.path, body)
        # self.expected is only a length to the inherited code (the echo check
        # is not used here); the batch's request bytes stand in for it
        return request * config.pipeline, request

    def _recv_want(self, i: int, state: int) -> int:
        return RECV_SIZE  # a response's length is in its head: ask for what is there

    def _eof_detail(self, i: int) -> str:
        return self._parsers[i].eof_detail()

    def _close(self, i: int) -> None:
        super()._close(i)
        self._parsers[i].reset()
        self._outstanding[i] = 0

    def _send(self, i: int, now: int) -> None:
        self._outstanding[i] = self.pipeline
        super()._send(i, now)

    def _new_stats(self) -> PhaseStats:
        self._nbytes = 0
        stats = super()._new_stats()
        self._lat_extend = stats.latencies_ns.extend
        return stats

    def _finish(self, stats: PhaseStats, t0: int, c0: float) -> None:
        super()._finish(stats, t0, c0)
        stats.bytes_received = self._nbytes

    # ------------------------------------------------------------------
    # responses

    def _receive(self, i: int, data: bytes, now: int) -> int:
        """Feed ``data`` to connection i's parser: GOOD when its batch is complete.

        Errors are counted (and the connection re-opened) here, so the
        verdict is never BAD."""
        self._nbytes += len(data)
        try:
            done = self._parsers[i].feed(data)
        except ResponseError as exc:
            self._bad_response(i, exc, now)
            return INCOMPLETE
        return self._account(i, done, now)

    def _bad_response(self, i: int, exc: ResponseError, now: int) -> None:
        """Count the correct responses read before the bad one, then the error."""
        self._count_done(i, min(exc.done, self._outstanding[i]), now)
        self._fail(i, exc.kind, exc.detail, now)

    def _count_done(self, i: int, done: int, now: int) -> None:
        self._outstanding[i] -= done
        if done and self._state[i] == INFLIGHT:  # proofs of life are not load
            self._stats.requests += done
            self._last_done = now
            if self._recording:
                self._lat_extend([now - self._due[i]] * done)

    def _account(self, i: int, done: int, now: int) -> int:
        """``done`` more responses on connection i: count them; GOOD if the batch is over."""
        if done > self._outstanding[i]:
            self._count_done(i, self._outstanding[i], now)
            self._fail(i, "malformed", "more responses than requests", now)
            return INCOMPLETE
        self._count_done(i, done, now)
        left = self._outstanding[i]
        parser = self._parsers[i]
        if left:
            if parser.closing:
                self._fail(i, "read", f"Connection: close with {left} pipelined requests unanswered", now)
            return INCOMPLETE
        if parser.partial:
            self._fail(i, "malformed", "bytes after the last response of the batch", now)
            return INCOMPLETE
        if parser.closing:
            self._reopen(i, now)
            return INCOMPLETE
        return GOOD

    def _reopen(self, i: int, now: int) -> None:
        """The server closes after a correct response: connect again, not an error."""
        if self._state[i] == PRIMING:
            self._fail(i, "read", "Connection: close on the proof of life (nothing can be held open)", now)
            return
        self._fails[i] = 0
        self._close(i)
        self._state[i] = DOWN
        self._connect(i, now)  # joins the load again once connected (_connected)

    def _complete(self, i: int, now: int) -> None:
        """A batch complete on the slow path (its responses are already counted)."""
        self._last_done = now
        self._next_request(i, now)

    # ------------------------------------------------------------------
    # the hot loop (engine.Worker._run_load with the HTTP check)

    def _run_load(self, deadline: int, drain_ns: int) -> int:
        clock = time.perf_counter_ns
        poll = self._ep.poll
        index = self._index
        state = self._state
        recv = self._recv
        due = self._due
        fails = self._fails
        socks = self._socks
        t_sent = self._t_sent
        parsers = self._parsers
        outstanding = self._outstanding
        pipeline = self.pipeline
        stats = self._stats
        lat_append = self._lat_append
        lat_extend = self._lat_extend
        record = self._recording
        msg = self.msg
        msize = len(msg)
        open_loop = self._open_loop
        slow_event = self._slow_event
        next_request = self._next_request
        account = self._account
        bad_response = self._bad_response
        fail = self._fail
        errname = self._errname
        n_active = self.n_active
        requests = 0
        nbytes = 0
        last_done = 0
        next_hk = 0
        drain_end = 0
        stopping = False
        while True:
            now = clock()
            if now >= next_hk:
                stats.requests += requests  # the slow path counts into stats too
                requests = 0
                if not stopping and now >= deadline:
                    stopping = self._stopping = True
                    drain_end = now + drain_ns
                if stopping:
                    if now >= drain_end:
                        break
                    if not any(state[i] == INFLIGHT for i in range(n_active)):
                        break
                self._housekeeping(now)
                next_hk = now + (DRAIN_CHECK_NS if stopping else HOUSEKEEPING_NS)
            if open_loop:
                if self._schedule and self._schedule[0][0] <= now:
                    self._fire_schedule(now)
                wake = self._next_timer(now)
            else:
                wake = next_hk if not self._reconnects else min(next_hk, self._reconnects[0][0])
            if not stopping:
                wake = min(wake, deadline)
            timeout = (wake - now) / 1e9
            for fd, ev in poll(timeout if timeout > 0 else 0):
                i = index.get(fd)
                if i is None:
                    continue
                if state[i] != INFLIGHT or ev != _IN:
                    slow_event(i, ev, clock())
                    continue
                try:
                    data = recv[i](RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    fail(i, "read", errname(exc), clock())
                    continue
                now = clock()
                if not data:
                    fail(i, "read", parsers[i].eof_detail(), now)
                    continue
                nbytes += len(data)
                parser = parsers[i]
                try:
                    done = parser.feed(data)
                except ResponseError as exc:
                    bad_response(i, exc, now)
                    continue
                if done != outstanding[i] or parser.partial or parser.closing:
                    # part of a batch, or its end with something odd: the slow path
                    if account(i, done, now) != GOOD:
                        continue
                else:  # the whole batch, nothing more: the common case
                    outstanding[i] = 0
                    requests += done
                    last_done = now
                    if record:
                        if done == 1:
                            lat_append(now - due[i])
                        else:
                            lat_extend([now - due[i]] * done)
                fails[i] = 0
                if stopping:
                    state[i] = READY
                    continue
                if open_loop:
                    next_request(i, now)
                    continue
                # closed loop: the next batch at once (inlined _send)
                due[i] = now
                t_sent[i] = now
                outstanding[i] = pipeline
                try:
                    sent = socks[i].send(msg)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    fail(i, "write", errname(exc), now)
                    continue
                if sent < msize:
                    self._sent[i] = sent
                    self._ep.modify(fd, _IN | _OUT)
        stats.requests += requests
        self._nbytes += nbytes
        return max(last_done, self._last_done)
