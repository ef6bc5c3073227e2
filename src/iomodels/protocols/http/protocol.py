"""The HTTP/1.1 protocol on the one protocol API: it moves bytes between the
transport and the sans-IO core (core.py), and runs one request/response cycle
at a time (routes.py).

Ordering: requests are taken from the core one at a time.  When a request is
complete but its response is not (a handler that answers later), reading
pauses and later requests wait in the core, so responses go out strictly in
request order (uvicorn: "Pipelined HTTP requests need to be queued up").

Writes: inside one data_received() every response is collected and written
with one transport.write(), so a pipelined batch costs one send.

Timers (``transport.set_idle_timeout``: close after that many seconds without
progress, no byte in and none of the pending output out; None: the server's
--idle-timeout), re-armed only when the value changes, so a keep-alive client
that sends whole requests costs no timer call at all:
    waiting for a request       --keepalive-timeout (the first: --header-timeout)
    inside a request head       what is left of --header-timeout since its first
                                byte (and the core checks the elapsed time on each
                                data_received, so a byte-a-second trickle is cut)
    inside a request body       --header-timeout without progress; the core also
                                enforces --min-body-rate
    our output backed up, or a response pending: None, the server's default
                                (the peer is not the one late)
"""

from __future__ import annotations

import time

from iomodels.core.protocol import Protocol
from iomodels.core.server import RECV_SIZE
from iomodels.protocols.http.core import (
    CONTINUE,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    END_OF_MESSAGE,
    ERROR,
    HEAD,
    IDLE,
    LAST_CHUNK,
    REASONS,
    HttpConnection,
    Limits,
    RemoteError,
    Request,
    http_date,
)
from iomodels.protocols.http.routes import ROUTES, TEXT, Handler

_response_head = HttpConnection.response_head
_IGNORE_BODY = Handler(None, None)  # stateless: answered already, the body is skipped
_monotonic = time.monotonic
_time = time.time


def _origin_form(target: bytes) -> bytes:
    """``http://host:port/path?q`` -> ``/path?q``; anything else unchanged."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return target
    slash = rest.find(b"/")
    query = rest.find(b"?")
    if slash < 0 or 0 <= query < slash:
        return b"/" + rest[query:] if query >= 0 else b"/"
    return rest[slash:]


class HttpSettings:
    """What the connections of one server share: limits, timeouts, the model's
    name, the stopping flag and the per-second caches (Date, fixed responses)."""

    def __init__(
        self,
        state=None,
        limits: Limits | None = None,
        keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
        server: bytes = b"iomodels",
        wsgi=None,
    ) -> None:
        self.state = state  # core.server.ServerState, or None (tests, a foreign runner)
        self.model = state.model if state is not None else "unknown"
        self.limits = limits or Limits()
        self.keepalive_timeout_s = keepalive_timeout_s
        self.server = server
        self.wsgi = wsgi  # wsgi.WsgiApp: --app serves every path, instead of the routes
        self._second = -1
        self.date = b""
        # spec -> 8 variants (close, HTTP/1.0, HEAD), rebuilt each second with Date.
        # Connections on several threads may race here: the worst is a rebuild.
        self._fixed: dict[tuple[bytes, bytes], list] = {}

    def stopping(self) -> bool:
        state = self.state
        return state is not None and state.stopping

    def tick(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self.date = http_date(second)
            self._fixed = {}
            self._second = second

    def fixed(self, spec: tuple[bytes, bytes], request: Request, close: bool) -> bytes:
        """The whole response for a fixed route, cached per second and variant."""
        variant = close | (request.http_version == "1.0") << 1 | (request.method == b"HEAD") << 2
        fixed = self._fixed
        slots = fixed.get(spec)
        if slots is None:
            slots = fixed[spec] = [None] * 8
        data = slots[variant]
        if data is None:
            content_type, body = spec
            head, _, _ = _response_head(
                request, 200, ((b"Content-Type", content_type),), len(body), self.date, self.server, close
            )
            data = slots[variant] = head if variant & 4 else head + body
        return data


class HttpProtocol(Protocol):
    """One connection.  Handlers answer through respond() or
    start_response()/send()/finish(); see routes.py."""

    __slots__ = (
        "transport",
        "settings",
        "_write",
        "_set_idle",
        "_core",
        "_out",
        "_handler",
        "_request",
        "_request_done",
        "_response_started",
        "_response_done",
        "_chunked",
        "_no_body",
        "_close_after",
        "_continue_sent",
        "_held",
        "_write_paused",
        "_reading_paused",
        "_eof",
        "_closing",
        "_armed",
        "_keepalive_s",
        "_input_paused",
        "_wsgi_environ",
        "_wsgi_sync",
        "_wsgi_fields",
    )

    def __init__(self, settings: HttpSettings | None = None) -> None:
        self.settings = settings or HttpSettings()
        self.transport = None

    # ---- the protocol API

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._write = transport.write
        self._set_idle = transport.set_idle_timeout
        self._core = HttpConnection(self.settings.limits)
        self._out: list | None = None  # collecting writes inside data_received
        self._handler: Handler | None = None  # the request being served
        self._request: Request | None = None
        self._request_done = self._response_started = self._response_done = False
        self._chunked = self._no_body = self._close_after = self._continue_sent = False
        self._held = False  # request complete, response not: later requests wait
        self._write_paused = self._reading_paused = self._eof = self._closing = False
        self._input_paused = False  # a WSGI app has a request body buffered up to its bound
        self._wsgi_environ: dict | None = None  # the connection's addresses, for WSGI environs
        self._wsgi_sync: tuple | None = None  # a WSGI worker's lock and way back to this loop
        self._wsgi_fields: tuple | None = None  # the last request's fields and their environ (wsgi_handler)
        self._armed: float | None = -1.0
        self._keepalive_s = self.settings.keepalive_timeout_s
        self._arm(self.settings.limits.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._closing:  # bytes already in flight when we closed: nobody will answer them
            return
        now = _monotonic()
        self.settings.tick(_time())
        self._out = out = []
        try:
            self._core.receive_data(data, now)
            if self._held and not self._reading_paused:
                self._update_reading()  # a lazy hold: now there is something to hold back
            self._process()
        finally:
            self._out = None
            if out and self.transport is not None:
                self._write(out[0] if len(out) == 1 else b"".join(out))
        # The keep-alive steady state (whole requests, all answered, the
        # keep-alive timer already armed) needs no timer work: test it inline.
        if self._handler is None and self._core.state is IDLE and self._armed == self._keepalive_s:
            return
        if not self._closing:
            self._update_timer(now)

    def eof_received(self) -> bool | None:
        self.settings.tick(_time())
        self._out = out = []
        try:
            self._core.receive_data(b"", _monotonic())
            self._process()
        finally:
            self._out = None
            self._flush(out)
        if self._held and not self._closing:
            self._eof = True  # answer what is pending, then close
            return True
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closing = True
        handler = self._handler
        if handler is not None and hasattr(handler, "connection_lost"):
            handler.connection_lost()  # a WSGI app on a worker stops, and its iterable is closed
        self._handler = None
        self.transport = None

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()
        self._arm(None)
        handler = self._handler
        if handler is not None and hasattr(handler, "pause_writing"):
            handler.pause_writing()  # a WSGI app stops pulling its iterable

    def resume_writing(self) -> None:
        self._write_paused = False
        handler = self._handler
        if handler is not None and hasattr(handler, "resume_writing"):
            handler.resume_writing()
        now = _monotonic()
        self._core.restart_body_clock(now)  # we held the peer back: not its delay
        self._update_reading()
        if not self._closing:
            self._update_timer(now)

    # ---- the cycle

    def _process(self) -> None:
        core = self._core
        events = core._events  # core.next_event(), without a call per event
        while not self._closing and not self._held:
            if not events:
                break  # NEED_DATA
            event = events.popleft()
            kind = type(event)
            if kind is bytes:
                self._handler.body(event)
            elif kind is Request:
                self._begin(event)
            elif event is END_OF_MESSAGE:
                self._request_done = True
                self._handler.end()
                if self._handler is None:
                    pass  # end() answered and completed the cycle (an inline WSGI app), or the peer went
                elif self._response_done:
                    self._cycle_complete()
                elif not self._closing:
                    self._held = True
                    # A handler that answers from a worker (WSGI) holds nearly
                    # every request: pausing then costs two epoll_ctl per
                    # request.  It may hold lazily: reading pauses only once
                    # more bytes are here (data_received), still at most one
                    # recv() of later requests.
                    if not getattr(self._handler, "hold_lazily", False) or events:
                        self._update_reading()
            else:
                self._remote_error(event)

    def _begin(self, request: Request) -> None:
        self._request = request
        self._request_done = self._response_started = self._response_done = False
        self._chunked = self._no_body = self._continue_sent = False
        self._close_after = not request.keep_alive or request.upgrade or self.settings.stopping()
        wsgi = self.settings.wsgi
        if wsgi is not None:
            self._handler = _IGNORE_BODY  # until the WSGI handler is in place
            wsgi.begin(self, request)
            return
        target = request.target
        if target[:1] != b"/":  # absolute-form, which servers must accept (RFC 9112 3.2.2)
            target = _origin_form(target)
        query = target.find(b"?")
        route = ROUTES.get(target if query < 0 else target[:query])
        if route is None:
            self._handler = _IGNORE_BODY
            self.respond(404, (TEXT,), b"not found\n")
        elif request.method not in route[0]:
            self._handler = _IGNORE_BODY
            allow = b", ".join(sorted(route[0]))
            self.respond(405, (TEXT, (b"Allow", allow)), b"method not allowed\n")
        else:
            self._handler = _IGNORE_BODY  # until the factory returns
            self._handler = route[1](self, request) or _IGNORE_BODY

    def _cycle_complete(self) -> None:
        self._handler = None
        self._request = None
        if self._close_after:
            self._close()
            return
        if self._held:
            self._held = False
            self._update_reading()
            if self._out is None:  # finished from outside data_received (a worker)
                self._out = out = []
                try:
                    self._process()
                finally:
                    self._out = None
                    self._flush(out)
                if self._eof and not self._held and not self._closing:
                    self._close()
                elif not self._closing:
                    self._update_timer(_monotonic())

    def _remote_error(self, error: RemoteError) -> None:
        if self._handler is not None and self._response_started:
            self._close()  # this request is answered or being answered: just end
            return
        request = self._request if self._handler is not None else None
        self._close_after = True
        body = f"{error.status} {REASONS[error.status]}: {error.detail}\n".encode("utf-8", "replace")
        head, _, _ = _response_head(
            request, error.status, (TEXT,), len(body), self.settings.date, self.settings.server, True
        )
        self._emit(head + body)
        self._close()

    # ---- answering (what handlers call)

    def _must_close(self) -> bool:
        # A client that asked for 100-continue and was not told to go on may or
        # may not send its body: the next request could not be found reliably.
        request = self._request
        if request.expect_continue and not self._continue_sent and not self._request_done:
            self._close_after = True
        return self._close_after

    def respond(self, status: int, headers, body: bytes) -> None:
        """A whole response with a known body, in one write."""
        request = self._request
        head, _, keep_alive = _response_head(
            request, status, headers, len(body), self.settings.date, self.settings.server, self._must_close()
        )
        self._close_after = not keep_alive
        self._response_started = True
        self._emit(head if request.method == b"HEAD" else head + body)
        self._response_done = True
        if self._request_done:
            self._cycle_complete()

    def respond_fixed(self, spec: tuple[bytes, bytes], request: Request) -> None:
        """A fixed route's response (plaintext, json): cached bytes, one write."""
        self._response_started = True
        self._emit(self.settings.fixed(spec, request, self._must_close()))
        self._response_done = True
        if self._request_done:
            self._cycle_complete()

    def send_continue(self) -> None:
        """Tell a client that waits on ``Expect: 100-continue`` to send its body."""
        request = self._request
        if request.expect_continue and not self._continue_sent and not self._request_done:
            self._continue_sent = True
            self._emit(CONTINUE)

    def start_response(self, status: int, *headers: tuple[bytes, bytes], content_length: int | None = None):
        """Send the head; the body follows with send() and ends with finish()."""
        request = self._request
        head, chunked, keep_alive = _response_head(
            request, status, headers, content_length, self.settings.date, self.settings.server,
            self._must_close(),
        )  # fmt: skip
        self._close_after = not keep_alive
        self._chunked = chunked
        self._no_body = request.method == b"HEAD"
        self._response_started = True
        self._emit(head)

    def send(self, data: bytes) -> None:
        if data and not self._no_body and not self._closing:
            self._emit(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def finish(self) -> None:
        if self._response_done or self._closing:
            return
        if self._chunked:
            self._emit(LAST_CHUNK)
        self._response_done = True
        if self._request_done:
            self._cycle_complete()

    # ---- plumbing

    def _emit(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out.append(data)
        elif self.transport is not None:
            self._write(data)

    def _flush(self, out: list) -> None:
        if out and self.transport is not None:
            self._write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def _close(self) -> None:
        """Flush what is collected, then close (the transport flushes the rest)."""
        if self._closing:
            return
        self._closing = True
        out = self._out
        if out:
            self._flush(out)
        if self.transport is not None:
            self.transport.close()

    def _update_reading(self) -> None:
        paused = self._write_paused or self._held or self._input_paused
        if paused != self._reading_paused and self.transport is not None:
            self._reading_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _update_timer(self, now: float) -> None:
        if self._write_paused or self._held or self._input_paused:
            self._arm(None)
            return
        state = self._core.state
        limits = self.settings.limits
        if state is IDLE:
            self._arm(self.settings.keepalive_timeout_s if self._handler is None else None)
        elif state is HEAD:
            left = self._core.head_started_at + limits.header_timeout_s - now
            self._arm(max(left, 0.001))
        else:
            self._arm(limits.header_timeout_s)  # BODY: a body that stalls

    def _arm(self, seconds: float | None) -> None:
        if seconds != self._armed and self.transport is not None:
            self._armed = seconds
            self._set_idle(seconds)

    # ---- what a WSGI handler (wsgi.py) calls, on this connection's thread

    def base_environ(self, server_environ: dict) -> dict:
        """The server's constant environ plus this connection's addresses
        (REMOTE_ADDR/PORT, SERVER_NAME/PORT), built once per connection."""
        environ = self._wsgi_environ
        if environ is None:
            transport = self.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            sock = transport.get_extra_info("sockname") if transport is not None else None
            peer = peer if isinstance(peer, tuple) else ("", 0)
            sock = sock if isinstance(sock, tuple) else ("", 0)
            environ = self._wsgi_environ = {
                **server_environ,
                "REMOTE_ADDR": str(peer[0]),
                "REMOTE_PORT": str(peer[1]),
                "SERVER_NAME": str(sock[0]),
                "SERVER_PORT": str(sock[1]),
            }
        return environ

    def keep_alive_after(self, close: bool) -> bool:
        """Whether the connection may stay open after this response (``close``:
        it may not)."""
        if close:
            self._close_after = True
        request = self._request
        return not self._must_close() and request.keep_alive and not request.upgrade

    def response_begins(self, keep_alive: bool) -> None:
        """The handler frames the body itself (chunks, the last chunk)."""
        self._close_after = not keep_alive
        self._chunked = False
        self._response_started = True

    def write_now(self, data: bytes, streaming: bool) -> None:
        """Inside data_received, output is batched into one write; a streamed
        piece goes out at once (with what was batched before it)."""
        out = self._out
        if out is None:
            if self.transport is not None and not self._closing:
                self._write(data)
        elif streaming:
            out.append(data)
            self._flush(out)
        else:
            out.append(data)

    def respond_framed(self, data: bytes, keep_alive: bool, whole: bool) -> None:
        """The rest of a response the handler framed itself (its head, if not
        sent yet, and its end), in one write; ``whole``: else the body fell
        short of its Content-Length and the connection is cut."""
        if self._closing:
            return
        self._close_after = not keep_alive
        self._chunked = False
        self._response_started = True
        self._emit(data)
        if not whole:
            self._close()
            return
        self._response_done = True
        if self._request_done:
            self._cycle_complete()

    def respond_error(self, status: int, body: bytes) -> None:
        self._close_after = True
        self.respond(status, (TEXT,), body)

    def cut(self) -> None:
        """End the connection in the middle of a response (what went out stays)."""
        self._close()

    def transport_closing(self) -> bool:
        transport = self.transport
        return self._closing or transport is None or transport.is_closing()

    def pause_input(self, paused: bool) -> None:
        """A WSGI app's buffered body is above / back below its bound.  While
        we hold the peer back, neither the body-stall timer nor the minimum
        body rate may blame it."""
        self._input_paused = paused
        self._update_reading()
        if self._closing:
            return
        if paused:
            self._arm(None)
        else:
            now = _monotonic()
            self._core.restart_body_clock(now)
            self._update_timer(now)

    def pump_body(self):
        """The blocking models: the next event of the current request's body
        for wsgi.input, recv()ing when none is queued, on this connection's own
        thread.  Yields one body ``bytes``, or END_OF_MESSAGE / a RemoteError
        (left queued for _process, which ends the request as usual), or None
        (the peer went away)."""
        core = self._core
        events = core._events
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        while True:
            if events:
                first = events[0]
                yield events.popleft() if type(first) is bytes else first
                return
            if sock is None or core.state is ERROR or self.transport_closing():
                yield None
                return
            try:
                data = sock.recv(RECV_SIZE)
            except OSError:  # reset, or SO_RCVTIMEO (--idle-timeout) expired
                data = b""
            core.receive_data(data, _monotonic())
            if not data and not events:
                yield None
                return


def make_factory(state=None, config=None):
    """The zero-argument protocol factory the models call, with one HttpSettings
    for the whole server.  ``config``: a ServerConfig (its http_* fields)."""
    if config is not None:
        limits = Limits(
            max_body=config.http_max_body,
            header_timeout_s=config.http_header_timeout_s,
            min_body_rate=config.http_min_body_rate,
        )
        wsgi = None
        if config.http_app:
            from iomodels.protocols.http.wsgi import make_wsgi_app

            wsgi = make_wsgi_app(config.http_app, config.model, config.http_app_inline)
        settings = HttpSettings(state, limits, config.http_keepalive_timeout_s, wsgi=wsgi)
    else:
        settings = HttpSettings(state)

    def http_protocol() -> HttpProtocol:
        return HttpProtocol(settings)

    http_protocol.settings = settings  # type: ignore[attr-defined]
    return http_protocol
