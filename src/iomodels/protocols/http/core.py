"""The sans-IO HTTP/1.1 core: bytes in, request events out; responses in, bytes out.

No sockets, no transport, no clock of its own (h11's shape: "h11 contains no
IO code"): ``receive_data(data, now)`` feeds llhttp through httptools and
queues events that ``next_event()`` hands out one at a time:

    Request            the head of a request (method, target, headers, framing)
    bytes              a piece of its body (the chunk itself: no wrapper object
                       per chunk on the hot path)
    END_OF_MESSAGE     the request is complete
    RemoteError        the peer broke the protocol or a limit; ``status`` is the
                       answer to send (400, 408, 413, 414, 431, 501, 505) before
                       closing.  Nothing is parsed after it: errors are sticky,
                       as llhttp's are.
    NEED_DATA          nothing queued: feed more bytes

Pipelined requests queue in order; the caller decides when to take the next
one (it pauses reading while a response is in progress, as uvicorn does), so
at most one recv() of a later request is ever held here.

The response side frames what the caller hands it: ``response_head`` picks
Content-Length, chunked or close-delimited framing from the request's version
and decides whether the connection stays open; ``response_data`` and
``response_end`` frame the body.

Limits cite precedents (h11 does the same):
- head: 64 KiB of request line and fields (h11: 16 KiB; node.js: 16 KiB, was
  80 KiB; nginx: 4 x 8 KiB large_client_header_buffers), and 100 fields
  (Apache's LimitRequestFields default) -> 431; a request target alone over
  64 KiB -> 414;
- Host: a 1.1 request without one, or any request with two -> 400 (RFC 9112
  3.2);
- body: ``max_body`` bytes -> 413, from Content-Length before any body byte
  is read, else as a chunked body passes it;
- a head must be complete within ``header_timeout`` seconds of its first byte
  (nginx client_header_timeout) -> 408; a body must arrive at
  ``min_body_rate`` bytes a second after a grace period (Kestrel's
  MinRequestBodyDataRate: 240 B/s after 5 s) -> 408.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from email.utils import formatdate

try:
    import httptools
except ImportError:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "--protocol http needs httptools (llhttp's binding): pip install 'iomodels[http]'"
    ) from None

__all__ = [
    "END_OF_MESSAGE",
    "NEED_DATA",
    "HttpConnection",
    "Limits",
    "RemoteError",
    "Request",
    "http_date",
]

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_FIELDS = 100
DEFAULT_MAX_BODY = 1024**3  # 1 GiB: /echo streams, so this is policy, not memory
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 5.0
DEFAULT_MIN_BODY_RATE = 240  # bytes/s, after BODY_RATE_GRACE_S (Kestrel's defaults)
BODY_RATE_GRACE_S = 5.0

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def http_date(seconds: float) -> bytes:
    """An IMF-fixdate (RFC 9110 5.6.7), as the Date header wants it."""
    return formatdate(seconds, usegmt=True).encode("ascii")


@dataclass(frozen=True)
class Limits:
    max_head_bytes: int = MAX_HEAD_BYTES
    max_header_fields: int = MAX_HEADER_FIELDS
    max_body: int = DEFAULT_MAX_BODY
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    min_body_rate: float = DEFAULT_MIN_BODY_RATE  # bytes/s; 0: no minimum
    body_rate_grace_s: float = BODY_RATE_GRACE_S


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
END_OF_MESSAGE = _Sentinel("END_OF_MESSAGE")


class Request:
    """A request head.  ``headers`` is a list of (name, value) bytes as received."""

    __slots__ = (
        "method",
        "target",
        "http_version",
        "headers",
        "keep_alive",
        "expect_continue",
        "content_length",
        "chunked",
        "upgrade",
    )

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.http_version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.expect_continue = False
        self.content_length: int | None = None
        self.chunked = False
        self.upgrade = False  # Upgrade/CONNECT: answered, then the connection closes

    @property
    def path(self) -> bytes:
        return self.target.partition(b"?")[0]

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return f"<Request {self.method.decode()} {self.target!r} HTTP/{self.http_version}>"


class RemoteError(Exception):
    """The peer broke HTTP or a limit: answer ``status``, then close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteError) and (self.status, self.detail) == (other.status, other.detail)

    def __hash__(self) -> int:
        return hash((self.status, self.detail))


# Parser states (the receiving side).  IDLE: between requests; HEAD: the first
# byte of a request has arrived, its head has not ended; BODY: head done, body
# not yet complete; ERROR: a RemoteError was queued, nothing more is parsed.
IDLE, HEAD, BODY, ERROR = "IDLE", "HEAD", "BODY", "ERROR"


class HttpConnection:
    """One connection's HTTP state, without IO.  See the module docstring."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._events: deque = deque()
        self._parser = httptools.HttpRequestParser(self)
        self.state = IDLE
        self._request: Request | None = None
        self._head_bytes = 0  # request line + fields seen so far, precisely
        self._fed_in_head = 0  # bytes fed while the head was incomplete (memory bound)
        self._hosts = 0  # Host fields in this head
        self.head_started_at = 0.0
        self.body_started_at = 0.0
        self.body_bytes = 0  # of the current request
        self._now = 0.0
        self._last_closes = False  # the last complete request ends the connection

    # ---- receiving

    def receive_data(self, data: bytes, now: float = 0.0) -> None:
        """Parse ``data`` (``b""``: the peer closed) and queue the events."""
        if self.state is ERROR:
            return
        self._now = now
        if not data:
            if self.state is not IDLE:
                self._fail(RemoteError(400, "connection closed in the middle of a request"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RemoteError):
                self._fail(cause)
            else:  # our own bug: let it through
                raise
        except httptools.HttpParserUpgrade:
            # Upgrade or CONNECT: the request is complete and queued; what
            # follows is another protocol we do not speak.  Stop parsing; the
            # answer to that request says Connection: close.
            self.state = ERROR
        except httptools.HttpParserError as exc:
            if self._last_closes:
                # Bytes after a request that ends the connection (HTTP/1.0,
                # Connection: close): llhttp refuses them, and so do we,
                # silently: that request's answer closes the connection.
                self.state = ERROR
            else:
                self._fail(RemoteError(400, str(exc) or type(exc).__name__))
        else:
            if self.state is not IDLE:  # between requests (the keep-alive steady state) nothing to check
                self._check_limits(len(data), now)

    def _check_limits(self, fed: int, now: float) -> None:
        state = self.state
        if state is HEAD:
            self._fed_in_head += fed
            # httptools holds a field until its end: bound that memory too.
            if self._fed_in_head > 2 * self.limits.max_head_bytes:
                self._fail(RemoteError(431, "request head too large"))
            elif now - self.head_started_at > self.limits.header_timeout_s:
                self._fail(RemoteError(408, "request head not complete in time"))
        elif state is BODY and self.limits.min_body_rate:
            elapsed = now - self.body_started_at
            if (
                elapsed > self.limits.body_rate_grace_s
                and self.body_bytes < self.limits.min_body_rate * elapsed
            ):
                self._fail(RemoteError(408, "request body slower than the minimum rate"))

    def restart_body_clock(self, now: float) -> None:
        """Reading was paused by us (back-pressure): the peer is not to blame."""
        self.body_started_at = now
        self.body_bytes = 0

    def _fail(self, error: RemoteError) -> None:
        self.state = ERROR
        self._events.append(error)

    def next_event(self):
        """The next event, or NEED_DATA."""
        events = self._events
        return events.popleft() if events else NEED_DATA

    def has_events(self) -> bool:
        return bool(self._events)

    # httptools callbacks (only the ones defined here are wired)

    def on_message_begin(self) -> None:
        self._request = Request()
        self.state = HEAD
        self._head_bytes = 0
        self._fed_in_head = 0
        self._hosts = 0
        self.head_started_at = self._now

    def on_url(self, url: bytes) -> None:
        # httptools reports a URL split across feeds in pieces.
        request = self._request
        request.target = request.target + url if request.target else url
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_head_bytes:
            raise RemoteError(414, f"request target over {self.limits.max_head_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._request
        headers = request.headers
        headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.limits.max_head_bytes:
            raise RemoteError(431, "request head too large")
        if len(headers) > self.limits.max_header_fields:
            raise RemoteError(431, f"more than {self.limits.max_header_fields} header fields")
        # Only a few fields change how we frame or answer: look at those.
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            for coding in value.split(b","):
                if coding.strip().lower() != b"chunked":
                    raise RemoteError(501, f"transfer coding {coding.strip()!r} not implemented")
            request.chunked = True
        elif len(name) == 6 and name.lower() == b"expect":
            if value.strip().lower() == b"100-continue":
                request.expect_continue = True
        elif len(name) == 4 and name.lower() == b"host":
            self._hosts += 1
        elif len(name) == 14 and name.lower() == b"content-length":
            # llhttp has already refused duplicates, signs and overflow.
            request.content_length = int(value)
            if request.content_length > self.limits.max_body:
                raise RemoteError(413, f"Content-Length over the limit of {self.limits.max_body}")

    def on_headers_complete(self) -> None:
        request = self._request
        parser = self._parser
        request.method = parser.get_method()
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise RemoteError(505, f"HTTP/{version} not supported")
        request.http_version = version
        # RFC 9112 3.2: a 1.1 request without Host, or any request with two,
        # MUST get a 400 (h11 and nginx do the same).
        if self._hosts != 1 and (self._hosts or version == "1.1"):
            raise RemoteError(400, "no Host header" if not self._hosts else "more than one Host header")
        if version == "1.0":  # RFC 9110 10.1.1: MUST ignore a 1.0 request's 100-continue
            request.expect_continue = False
        elif request.expect_continue and not request.has_body:
            request.expect_continue = False  # nothing to wait for
        request.keep_alive = parser.should_keep_alive()
        request.upgrade = parser.should_upgrade() or request.method == b"CONNECT"
        self.state = BODY
        self.body_started_at = self._now
        self.body_bytes = 0
        self._events.append(request)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body:
            raise RemoteError(413, f"body over the limit of {self.limits.max_body}")
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._last_closes = not self._parser.should_keep_alive()
        self.state = IDLE
        self._request = None
        self._events.append(END_OF_MESSAGE)

    # ---- sending

    @staticmethod
    def response_head(
        request: Request | None,
        status: int,
        headers: list[tuple[bytes, bytes]] | tuple = (),
        content_length: int | None = None,
        date: bytes = b"",
        server: bytes = b"iomodels",
        close: bool = False,
    ) -> tuple[bytes, bool, bool]:
        """(head bytes, chunked, keep_alive) for a response to ``request``.

        ``content_length`` None means the body is streamed: chunked for
        HTTP/1.1, close-delimited for HTTP/1.0.  ``close`` forces
        ``Connection: close`` (an error, a stopping server)."""
        keep_alive = not close and request is not None and request.keep_alive and not request.upgrade
        chunked = False
        reason = REASONS[status].encode()
        lines = [b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n" % (status, reason, server, date)]
        for name, value in headers:
            lines.append(b"%s: %s\r\n" % (name, value))
        head_request = request is not None and request.method == b"HEAD"
        if content_length is not None:
            lines.append(b"Content-Length: %d\r\n" % content_length)
        elif status >= 200 and status not in (204, 304):
            if request is not None and request.http_version == "1.1":
                chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                keep_alive = False  # HTTP/1.0: the end of the body is the close
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        elif request.http_version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        if head_request:
            chunked = False
        return b"".join(lines), chunked, keep_alive

    @staticmethod
    def response_data(data: bytes, chunked: bool) -> bytes:
        if not chunked:
            return data
        return b"%x\r\n%s\r\n" % (len(data), data)

    @staticmethod
    def response_end(chunked: bool) -> bytes:
        return LAST_CHUNK if chunked else b""
