"""The built-in routes, and the request/response cycle a handler lives in.

A request is served by one handler object, created when its head arrives:

    handler = route(protocol, request)
    handler.body(chunk)*          as the body arrives (never buffered here)
    handler.end()                 the request is complete

and it answers through the protocol, in one of two shapes:

    protocol.respond(status, headers, body)          a whole response, one write
    protocol.start_response(status, headers, length) then send(data)*, finish()

``finish()`` may come later than ``end()`` (a WSGI app on a worker thread,
issue 10 item 2): the protocol holds the next pipelined request until then.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from iomodels.protocols.upper import UpperCaser

if TYPE_CHECKING:
    from iomodels.protocols.http.core import Request
    from iomodels.protocols.http.protocol import HttpProtocol

TEXT = (b"Content-Type", b"text/plain; charset=utf-8")
OCTETS = (b"Content-Type", b"application/octet-stream")
HTML = (b"Content-Type", b"text/html; charset=utf-8")

# Fixed answers (TechEmpower's plaintext and JSON tests): the protocol caches
# the whole response per second and per framing variant (see FixedCache).
PLAINTEXT = (b"text/plain", b"Hello, World!")
JSON = (b"application/json", b'{"message":"Hello, World!"}')


class Handler:
    """A handler that ignores the request body; subclasses answer."""

    __slots__ = ("protocol", "request")

    def __init__(self, protocol: HttpProtocol, request: Request) -> None:
        self.protocol = protocol
        self.request = request

    def body(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        pass


class StreamHandler(Handler):
    """POST /echo and /upper: each body piece goes out as a chunk as it arrives,
    so memory stays bounded whatever the upload; back-pressure is the
    transport's (Protocol.pause_writing pauses reading)."""

    __slots__ = ("_started",)

    def __init__(self, protocol: HttpProtocol, request: Request) -> None:
        super().__init__(protocol, request)
        self._started = False
        protocol.send_continue()

    def transform(self, data: bytes) -> bytes:
        return data

    def tail(self) -> bytes:
        return b""

    def body(self, data: bytes) -> None:
        out = self.transform(data)
        if not out:
            return
        if not self._started:
            self._started = True
            self.protocol.start_response(200, self.content_type)
        self.protocol.send(out)

    def end(self) -> None:
        out = self.tail()
        if not self._started:  # an empty body, or one tail: a plain response
            self.protocol.respond(200, (self.content_type,), out)
            return
        if out:
            self.protocol.send(out)
        self.protocol.finish()


class Echo(StreamHandler):
    __slots__ = ()
    content_type = OCTETS


class Upper(StreamHandler):
    __slots__ = ("_upper",)
    content_type = TEXT

    def __init__(self, protocol: HttpProtocol, request: Request) -> None:
        self._upper = UpperCaser()
        super().__init__(protocol, request)

    def transform(self, data: bytes) -> bytes:
        return self._upper.feed(data)

    def tail(self) -> bytes:
        return self._upper.finish()


# A route is called with the request's head.  It answers at once (and returns
# None: the protocol skips the body) or returns the Handler that will.


def index(protocol: HttpProtocol, request: Request) -> None:
    model = html.escape(protocol.settings.model)
    items = "".join(
        f"<li><code>{' '.join(sorted(m.decode() for m in methods))} {path.decode()}</code>: {what}</li>"
        for path, (methods, _, what) in ROUTES.items()
    )
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>iomodels</title></head><body>"
        f"<h1>iomodels: model {model}</h1><ul>{items}</ul></body></html>\n"
    ).encode()
    protocol.respond(200, (HTML,), page)


def health(protocol: HttpProtocol, request: Request) -> None:
    if protocol.settings.stopping():
        protocol.respond(503, (TEXT,), b"stopping\n")
    else:
        protocol.respond(200, (TEXT,), b"ok\n")


def plaintext(protocol: HttpProtocol, request: Request) -> None:
    protocol.respond_fixed(PLAINTEXT, request)


def json(protocol: HttpProtocol, request: Request) -> None:
    protocol.respond_fixed(JSON, request)


GET = frozenset({b"GET", b"HEAD"})
POST = frozenset({b"POST"})

# path -> (methods, handler factory, what it does: the index page lists it)
ROUTES = {
    b"/": (GET, index, "this page"),
    b"/plaintext": (GET, plaintext, "Hello, World! as text/plain"),
    b"/json": (GET, json, 'the JSON {"message":"Hello, World!"}'),
    b"/echo": (POST, Echo, "the request body back, streamed (chunked)"),
    b"/upper": (POST, Upper, "the body upper-cased as UTF-8 text, streamed (chunked)"),
    b"/health": (GET, health, "200 while the server accepts, 503 once it is stopping"),
}
