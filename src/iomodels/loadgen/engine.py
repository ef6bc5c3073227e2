"""The load generator's engine: one process, one level-triggered epoll loop.

Waiting: a single thread blocks in ``epoll_wait`` over every connection of
  this worker; timers (open-loop send times, reconnect back-off, timeouts)
  bound the wait, so the loop never spins and never sleeps past a deadline.
Copying: ``recv()`` returns a fresh ``bytes`` per reply; in the common case
  (the whole reply in one ``recv``) checking it is one ``==`` against the
  precomputed expected reply, the cheapest check Python offers.
What to watch when measuring: this process must not be the bottleneck.  The
  hot path (reply complete -> check -> record -> send the next request) is
  inlined in ``_run_load`` with every attribute hoisted into a local, and a
  latency is one ``array.append`` of an int: the HDR histogram is filled
  after the window (values counted first, so ``record_value`` runs once per
  distinct microsecond, not once per request).  More CPU: ``--workers``.
Size: over the house's ~600 lines because ``_run_load`` is one inlined hot
  loop (a call per reply would cost the generator the headroom it needs);
  http_engine.py subclasses this Worker and keeps its own inlined loop for
  the same reason.
Facts that shaped this code:
- Closed loop (one request in flight per connection, the next sent when the
  reply is complete) measures what the server *did*, not what a client
  would have seen: a server that stalls for 1 s delays one request per
  connection, and p99 hides it (coordinated omission, Gil Tene).  Open loop
  (``rate``) gives each connection a fixed schedule of *intended* send times
  and counts latency from the intended time, as wrk2 does, so a stall shows
  up in every request that should have been sent during it.
- Errors are counted by kind (connect, read, write, timeout, mismatch) and
  the connection is closed and re-opened after a back-off that doubles per
  consecutive failure (10 ms .. 1 s, jittered) and is reset only by a
  correct reply: a server that accepts and closes at once costs a bounded
  number of attempts, not a spinning CPU.
- A mismatch whose length is right leaves the stream in sync, so the
  connection carries on (one error per bad reply); bytes beyond the expected
  reply mean the stream is out of sync, so the connection is re-opened.
- Connects are non-blocking and at most ``CONNECT_BATCH`` are in flight at
  once, so 15000 idle connections do not overflow the server's SYN queue
  (a dropped SYN costs a 1 s retransmit, which would look like server
  latency).
- At the end of a window no new request is sent and the in-flight ones get
  ``drain_s`` to complete; the rest count as timeouts and their connections
  are re-opened, so the server is idle between windows and a reply never
  lands in the wrong window.
"""

from __future__ import annotations

import collections
import errno
import heapq
import os
import random
import select
import socket
import time
from array import array
from dataclasses import dataclass, field

# status and malformed are HTTP's (http_engine.py): a response whose status is
# not 2xx, and bytes that are not an HTTP/1.1 response
ERROR_KINDS = ("connect", "read", "write", "timeout", "mismatch", "status", "malformed")

# bytes per recv() at most.  recv(n) mallocs n bytes first: above glibc's mmap
# threshold (128 KiB) that is an mmap+munmap per call, which cost 4x the CPU per
# request in our first version (recv(256 KiB) for 1 KiB replies).  We ask for
# what the reply still lacks, capped here: it also keeps reply framing exact.
RECV_SIZE = 64 * 1024
CONNECT_BATCH = 256  # connects in flight at once
BACKOFF_MIN_S = 0.010  # first reconnect delay after a failure
BACKOFF_MAX_S = 1.0  # cap of the doubling back-off
HOUSEKEEPING_NS = 20_000_000  # timers and timeout scans at least this often (20 ms)
DRAIN_CHECK_NS = 2_000_000  # while draining, look for the last reply this often (2 ms)
LATE_NS = 1_000_000  # open loop: a send this late (1 ms) counts in late_sends

# connection states
DOWN = 0  # no socket; a reconnect may be scheduled
CONNECTING = 1  # non-blocking connect in progress (EPOLLOUT)
PRIMING = 2  # setup: first request sent, waiting for the proof of life
READY = 3  # active, connected, no request in flight
INFLIGHT = 4  # active, a request sent (or being sent), reply not complete
HELD = 5  # idle connection proven alive, held open
DEAD = 6  # idle connection that failed or was closed: not re-opened

# what _receive makes of a chunk
INCOMPLETE = 0
GOOD = 1
BAD = 2

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


def payload(msize: int) -> bytes:
    """The request: printable ASCII, lower case, so ``upper`` has work to do."""
    pattern = b"abcdefghijklmnopqrstuvwxyz0123456789-"
    return (pattern * (msize // len(pattern) + 1))[:msize]


def expected_reply(protocol: str, request: bytes) -> bytes:
    """What a correct server answers.

    For ASCII bytes ``bytes.upper()`` is exactly the contract's
    ``decode('utf-8', 'surrogateescape').upper().encode(...)``; the request
    is ASCII by construction (``payload``), so this is the contract, not an
    approximation.
    """
    if protocol == "echo":
        return request
    if protocol == "upper":
        if not request.isascii():
            raise ValueError("upper: the generator only checks ASCII payloads")
        return request.upper()
    raise ValueError(f"unknown protocol {protocol!r}; choose echo or upper")


@dataclass
class WorkerConfig:
    host: str
    port: int
    active: int  # connections that carry load
    idle: int = 0  # connections proven alive once, then held idle
    msize: int = 1024
    protocol: str = "echo"
    rate: float = 0.0  # requests/s of this worker; 0: closed loop
    timeout_s: float = 2.0  # a reply later than this is an error
    connect_timeout_s: float = 3.0
    prime: bool = False  # setup also proves every *active* connection alive (one round trip)
    # protocol "http" only (http_engine.py)
    method: str = "GET"
    path: str = "/plaintext"
    pipeline: int = 1  # requests per write; the responses are matched in order


@dataclass
class PhaseStats:
    """What one worker saw in one phase; summed over workers by the runner."""

    requests: int = 0  # correct replies
    bytes_received: int = 0  # bytes of correct replies
    wall_s: float = 0.0  # the whole phase, drain included
    # from the start to the end of the window, or to the last correct reply if
    # that came later: the divisor of req/s, so a stuck connection's drain
    # (waiting for replies that never come) does not dilute the rate
    active_s: float = 0.0
    cpu_s: float = 0.0  # this worker's user+system CPU
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    error_detail: dict[str, int] = field(default_factory=dict)
    connects: int = 0  # connect attempts
    active_connected: int = 0  # active connections connected at the end of the phase
    idle_alive: int = 0  # idle connections held open (proven alive) at the end
    late_sends: int = 0  # open loop: requests sent after their intended time
    latencies_ns: array = field(default_factory=lambda: array("q"))


class Worker:
    """All connections of one load-generator process."""

    def __init__(self, config: WorkerConfig) -> None:
        if config.active < 0 or config.idle < 0 or config.msize < 1:
            raise ValueError("need active >= 0, idle >= 0, msize >= 1")
        self.config = config
        self.msg, self.expected = self._messages(config)
        family, _, _, _, sockaddr = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)[0]
        self._family = family
        self._addr = sockaddr
        n = config.active + config.idle
        self.n_active = config.active
        self.n = n
        self._ep = select.epoll()
        self._socks: list[socket.socket | None] = [None] * n
        self._recv: list = [None] * n  # bound sock.recv, hoisted for the hot path
        self._index: dict[int, int] = {}  # fd -> connection index
        self._state = [DOWN] * n
        self._got = [0] * n  # reply bytes received so far
        self._sent = [0] * n  # request bytes sent so far (partial sends)
        self._bad = [False] * n  # this reply already differs from the expected one
        self._due = [0] * n  # intended send time of the request in flight (ns)
        self._t_sent = [0] * n  # actual send time (ns), for timeouts
        self._t_conn = [0] * n  # connect start (ns), for connect timeouts
        self._fails = [0] * n  # consecutive failures, for the back-off
        self._reconnects: list[tuple[int, int]] = []  # heap of (time ns, index)
        self._to_connect: collections.deque[int] = collections.deque(range(n))
        self._connecting = 0
        self._rng = random.Random(os.getpid())
        self._stats = PhaseStats()
        self._loading = False  # inside a load phase: connected actives start sending
        self._stopping = False
        self._open_loop = config.rate > 0 and config.active > 0
        # per-connection interval of the open-loop schedule
        self._interval_ns = int(1e9 * config.active / config.rate) if self._open_loop else 0
        self._schedule: list[tuple[int, int]] = []  # heap of (intended send ns, index)

    def _messages(self, config: WorkerConfig) -> tuple[bytes, bytes]:
        """What one round trip sends, and what it must get back."""
        msg = payload(config.msize)
        return msg, expected_reply(config.protocol, msg)

    def _recv_want(self, i: int, state: int) -> int:
        """How many bytes to ask recv() for (the slow path)."""
        return len(self.expected) - self._got[i] if state in (INFLIGHT, PRIMING) else 1

    def _eof_detail(self, i: int) -> str:
        return "EOF (closed by the server)"

    # ------------------------------------------------------------------
    # errors and reconnects

    def _count(self, kind: str, detail: str) -> None:
        stats = self._stats
        stats.errors[kind] += 1
        key = f"{kind}: {detail}"
        stats.error_detail[key] = stats.error_detail.get(key, 0) + 1

    def _close(self, i: int) -> None:
        sock = self._socks[i]
        if sock is not None:
            self._index.pop(sock.fileno(), None)
            if self._state[i] == CONNECTING:
                self._connecting -= 1
            sock.close()  # also drops it from the epoll set
            self._socks[i] = None
            self._recv[i] = None

    def _fail(self, i: int, kind: str, detail: str, now: int) -> None:
        """Count the error, close the connection, schedule a reconnect with back-off."""
        self._count(kind, detail)
        was_idle_held = self._state[i] == HELD
        self._close(i)
        self._got[i] = self._sent[i] = 0
        self._bad[i] = False
        if i >= self.n_active and (was_idle_held or not self._setup_open):
            self._state[i] = DEAD  # an idle connection is proven once, not re-opened
            return
        self._state[i] = DOWN
        self._fails[i] += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (self._fails[i] - 1))
        delay *= self._rng.uniform(0.5, 1.5)  # jitter: failures do not reconnect in lockstep
        heapq.heappush(self._reconnects, (now + int(delay * 1e9), i))

    _setup_open = False  # inside setup(): failed idle connections are retried

    @staticmethod
    def _errname(exc: OSError | int | str) -> str:
        if isinstance(exc, str):
            return exc
        code = exc if isinstance(exc, int) else exc.errno
        return errno.errorcode.get(code, str(code)) if code else type(exc).__name__

    # ------------------------------------------------------------------
    # connecting

    def _start_connects(self, now: int) -> None:
        while self._to_connect and self._connecting < CONNECT_BATCH:
            i = self._to_connect.popleft()
            if self._state[i] == DOWN:  # not given up (DEAD) while it waited its turn
                self._connect(i, now)

    def _connect(self, i: int, now: int) -> None:
        self._stats.connects += 1
        try:
            sock = socket.socket(self._family, socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE/ENFILE: counted, retried after a back-off
            self._state[i] = DOWN
            self._fail(i, "connect", self._errname(exc), now)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(self._addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail(i, "connect", self._errname(err), now)
            return
        fd = sock.fileno()
        self._socks[i] = sock
        self._recv[i] = sock.recv
        self._index[fd] = i
        self._state[i] = CONNECTING
        self._connecting += 1
        self._t_conn[i] = now
        self._ep.register(fd, _OUT)

    def _connected(self, i: int, now: int) -> None:
        sock = self._socks[i]
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(i, "connect", self._errname(err), now)
            return
        self._connecting -= 1
        self._ep.modify(sock.fileno(), _IN)
        if i >= self.n_active or (self.config.prime and self._setup_open):
            self._state[i] = PRIMING  # prove it alive with one round trip
            self._due[i] = now
            self._send(i, now)
        else:
            self._state[i] = READY
            if self._loading and not self._stopping:
                self._start_active(i, now)

    def _start_active(self, i: int, now: int) -> None:
        """A ready active connection joins the load (closed loop: send now)."""
        if not self._open_loop:
            self._due[i] = now
            self._send(i, now)
            return
        # open loop: the next slot of this connection's grid that is not in the past
        due = self._due[i]
        if due < now:
            step = self._interval_ns
            due += ((now - due + step - 1) // step) * step
        self._due[i] = due
        heapq.heappush(self._schedule, (due, i))

    # ------------------------------------------------------------------
    # sending

    def _send(self, i: int, now: int) -> None:
        """Send the request on connection i (its due time is already set)."""
        sock = self._socks[i]
        assert sock is not None
        if self._state[i] == READY:
            self._state[i] = INFLIGHT
        self._t_sent[i] = now
        self._got[i] = 0
        self._bad[i] = False
        try:
            sent = sock.send(self.msg)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(i, "write", self._errname(exc), now)
            return
        if sent < len(self.msg):  # socket buffer full: finish on EPOLLOUT
            self._sent[i] = sent
            self._ep.modify(sock.fileno(), _IN | _OUT)
        else:
            self._sent[i] = len(self.msg)

    def _continue_send(self, i: int, now: int) -> None:
        sock = self._socks[i]
        assert sock is not None
        off = self._sent[i]
        try:
            sent = sock.send(memoryview(self.msg)[off:])
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(i, "write", self._errname(exc), now)
            return
        self._sent[i] = off + sent
        if self._sent[i] >= len(self.msg):
            self._ep.modify(sock.fileno(), _IN)

    # ------------------------------------------------------------------
    # receiving (the slow path: partial replies, idle connections, errors)

    def _receive(self, i: int, data: bytes, now: int) -> int:
        """Account ``data`` to connection i: INCOMPLETE, GOOD or BAD (complete, wrong).

        INCOMPLETE also when the stream went out of sync (the connection is
        then closed, the error counted); BAD is not counted here."""
        expected = self.expected
        got = self._got[i]
        end = got + len(data)
        if end > len(expected):  # cannot happen with recv(what is missing); kept as a guard
            self._fail(i, "mismatch", "reply longer than expected (stream out of sync)", now)
            return INCOMPLETE
        if data != expected[got:end]:
            self._bad[i] = True
        if end < len(expected):
            self._got[i] = end
            return INCOMPLETE
        self._got[i] = 0
        if self._bad[i]:
            self._bad[i] = False
            return BAD
        return GOOD

    def _bad_reply(self, i: int, now: int) -> None:
        """A complete reply with the right length and wrong bytes: counted; the
        stream is still in sync, so an active connection carries on."""
        if self._state[i] == PRIMING:
            self._fail(i, "mismatch", "proof-of-life reply differs from the expected bytes", now)
            return
        self._count("mismatch", "reply differs from the expected bytes")
        self._next_request(i, now)

    def _slow_event(self, i: int, ev: int, now: int) -> None:
        """Every event but a whole reply on an active connection in flight."""
        state = self._state[i]
        if state == CONNECTING:
            self._connected(i, now)
            return
        if ev & _OUT and self._sent[i] < len(self.msg) and state in (INFLIGHT, PRIMING):
            self._continue_send(i, now)
            if self._socks[i] is None:
                return
        if not ev & (_IN | select.EPOLLERR | select.EPOLLHUP):
            return
        want = self._recv_want(i, state)
        try:
            data = self._recv[i](min(RECV_SIZE, max(want, 1)))
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(i, "read", self._errname(exc), now)
            return
        if not data:
            self._fail(i, "read", self._eof_detail(i), now)
            return
        if state in (HELD, READY):  # nothing was asked
            self._fail(i, "mismatch", "unsolicited bytes", now)
            return
        verdict = self._receive(i, data, now)
        if verdict != GOOD:
            if verdict == BAD:
                self._bad_reply(i, now)
            return
        self._fails[i] = 0  # a correct reply: the back-off starts over
        if state == PRIMING:
            if i >= self.n_active:
                self._state[i] = HELD
            else:
                self._state[i] = READY
                if self._loading and not self._stopping:
                    self._start_active(i, now)
            return
        self._complete(i, now)

    def _complete(self, i: int, now: int) -> None:
        """A correct reply on an active connection (slow path)."""
        self._stats.requests += 1
        self._last_done = now
        if self._recording:
            self._lat_append(now - self._due[i])
        self._next_request(i, now)

    def _next_request(self, i: int, now: int) -> None:
        if self._stopping:
            self._state[i] = READY
            return
        if not self._open_loop:
            self._due[i] = now
            self._send(i, now)
            return
        due = self._due[i] + self._interval_ns
        if due <= now:  # behind schedule: send at once, latency still counts from `due`
            self._due[i] = due
            if now - due > LATE_NS:
                self._stats.late_sends += 1
            self._send(i, now)
        else:
            self._state[i] = READY
            self._due[i] = due
            heapq.heappush(self._schedule, (due, i))

    # ------------------------------------------------------------------
    # timers

    def _housekeeping(self, now: int) -> None:
        # reconnects whose back-off is over
        heap = self._reconnects
        while heap and heap[0][0] <= now:
            _, i = heapq.heappop(heap)
            if self._state[i] == DOWN:
                self._to_connect.append(i)
        self._start_connects(now)
        # timeouts: a scan of every connection, at most every HOUSEKEEPING_NS
        timeout = int(self.config.timeout_s * 1e9)
        connect_timeout = int(self.config.connect_timeout_s * 1e9)
        state = self._state
        # held idle connections need no scan: only actives, and idle ones during setup
        for i in range(self.n if self._setup_open else self.n_active):
            st = state[i]
            # PRIMING is bounded by the setup deadline instead: a server that forks
            # per connection may take longer than one reply timeout to reach the
            # last one, and re-opening it would only queue one more fork
            if st == INFLIGHT:
                if now - self._t_sent[i] > timeout:
                    self._fail(i, "timeout", f"no reply within {self.config.timeout_s:g} s", now)
            elif st == CONNECTING and now - self._t_conn[i] > connect_timeout:
                self._fail(i, "connect", f"timed out after {self.config.connect_timeout_s:g} s", now)

    def _fire_schedule(self, now: int) -> None:
        heap = self._schedule
        state = self._state
        while heap and heap[0][0] <= now:
            due, i = heapq.heappop(heap)
            if state[i] != READY or self._due[i] != due or self._stopping:
                continue  # stale entry: the connection failed or was re-scheduled
            if now - due > LATE_NS:
                self._stats.late_sends += 1
            self._send(i, now)

    def _next_timer(self, now: int) -> int:
        nxt = now + HOUSEKEEPING_NS
        if self._schedule:
            nxt = min(nxt, self._schedule[0][0])
        if self._reconnects:
            nxt = min(nxt, self._reconnects[0][0])
        return nxt

    # ------------------------------------------------------------------
    # phases

    def _new_stats(self) -> PhaseStats:
        self._stats = PhaseStats()
        self._lat_append = self._stats.latencies_ns.append
        return self._stats

    _recording = False
    _lat_append = None
    _last_done = 0

    def setup(self, timeout_s: float) -> PhaseStats:
        """Connect everything; prove every idle connection (and, with
        ``config.prime``, every active one) alive by one round trip.

        Returns when every active connection is ready and every idle one is
        held, or after ``timeout_s``; idle connections not alive by then are
        given up, active ones not primed are re-opened (without priming)
        during the load; both count as errors of this setup phase.
        """
        stats = self._new_stats()
        clock = time.perf_counter_ns
        t0 = clock()
        c0 = time.process_time()  # exact (CLOCK_PROCESS_CPUTIME_ID), not tick samples
        end = t0 + int(timeout_s * 1e9)
        self._setup_open = True
        self._start_connects(t0)
        poll = self._ep.poll
        index = self._index
        state = self._state
        n_active = self.n_active
        next_hk = 0
        while True:
            now = clock()
            if now >= next_hk:
                self._housekeeping(now)
                next_hk = now + HOUSEKEEPING_NS
                pending = any(state[i] != READY for i in range(n_active)) or any(
                    state[i] != HELD and state[i] != DEAD for i in range(n_active, self.n)
                )
                if not pending or now >= end:
                    break
            for fd, ev in poll(max(0.0, (min(self._next_timer(now), end) - now) / 1e9)):
                i = index.get(fd)
                if i is not None:
                    self._slow_event(i, ev, clock())
        now = clock()
        self._setup_open = False
        for i in range(self.n_active, self.n):
            if state[i] not in (HELD, DEAD):
                self._fail(i, "timeout", "idle connection not alive at the end of setup", now)
        for i in range(self.n_active):
            if state[i] == PRIMING:
                self._fail(i, "timeout", "active connection not primed at the end of setup", now)
        self._finish(stats, t0, c0)
        return stats

    def run(self, duration_s: float, record: bool, drain_s: float) -> PhaseStats:
        """One load phase: send for ``duration_s``, then drain for up to ``drain_s``."""
        stats = self._new_stats()
        self._recording = record
        self._loading = True
        self._stopping = False
        clock = time.perf_counter_ns
        c0 = time.process_time()  # exact (CLOCK_PROCESS_CPUTIME_ID), not tick samples
        start = clock()
        deadline = start + int(duration_s * 1e9)
        state = self._state
        n_active = self.n_active
        # start every ready active connection; open loop: stagger the first sends
        for i in range(n_active):
            if state[i] == READY:
                if self._open_loop:
                    self._due[i] = start + (self._interval_ns * i) // max(1, n_active)
                    heapq.heappush(self._schedule, (self._due[i], i))
                else:
                    self._due[i] = start
                    self._send(i, start)
        self._last_done = 0
        try:
            last = self._run_load(deadline, int(drain_s * 1e9))
        finally:
            self._loading = False
            self._recording = False
        # what is still in flight after the drain never completed: timeouts
        now = clock()
        for i in range(n_active):
            if state[i] == INFLIGHT:
                self._fail(i, "timeout", "no reply by the end of the window + drain", now)
        self._schedule.clear()
        self._finish(stats, start, c0)
        stats.active_s = (max(deadline, last, self._last_done) - start) / 1e9
        return stats

    def _run_load(self, deadline: int, drain_ns: int) -> int:
        """The hot loop.  Every name it touches per event is a local.

        Returns the time of the last reply completed on the hot path."""
        clock = time.perf_counter_ns
        poll = self._ep.poll
        index = self._index
        state = self._state
        recv = self._recv
        got = self._got
        due = self._due
        fails = self._fails
        socks = self._socks
        t_sent = self._t_sent
        stats = self._stats
        lat_append = self._lat_append
        record = self._recording
        expected = self.expected
        hot_size = min(len(expected), RECV_SIZE)
        msg = self.msg
        msize = len(msg)
        open_loop = self._open_loop
        slow_event = self._slow_event
        next_request = self._next_request
        fail = self._fail
        errname = self._errname
        n_active = self.n_active
        requests = 0
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
            events = poll(timeout if timeout > 0 else 0)
            for fd, ev in events:
                i = index.get(fd)
                if i is None:
                    continue
                if state[i] != INFLIGHT or ev != _IN or got[i]:
                    slow_event(i, ev, clock())
                    continue
                # the hot path: an active connection, a request in flight, data to read
                try:
                    data = recv[i](hot_size)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    fail(i, "read", errname(exc), clock())
                    continue
                now = clock()
                if data != expected:  # partial, longer, wrong or EOF: the slow path decides
                    if not data:
                        fail(i, "read", "EOF (closed by the server)", now)
                        continue
                    verdict = self._receive(i, data, now)
                    if verdict != GOOD:
                        if verdict == BAD:
                            self._bad_reply(i, now)
                        continue
                requests += 1
                last_done = now
                fails[i] = 0
                if record:
                    lat_append(now - due[i])
                if stopping:
                    state[i] = READY
                    continue
                if open_loop:
                    next_request(i, now)
                    continue
                # closed loop: the next request at once (inlined _send)
                due[i] = now
                t_sent[i] = now
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
        return last_done

    def _finish(self, stats: PhaseStats, t0: int, c0: float) -> None:
        c1 = time.process_time()
        stats.wall_s = (time.perf_counter_ns() - t0) / 1e9
        stats.cpu_s = c1 - c0
        stats.bytes_received = stats.requests * len(self.expected)
        stats.active_connected = sum(1 for i in range(self.n_active) if self._state[i] in (READY, INFLIGHT))
        stats.idle_alive = sum(1 for i in range(self.n_active, self.n) if self._state[i] == HELD)

    def close(self) -> None:
        for i in range(self.n):
            self._close(i)
        self._ep.close()
