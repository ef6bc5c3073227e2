"""HTTP/1.1 on the generator's side: the requests it sends, the responses it checks.

Sans-IO, like the server's core (protocols/http/core.py): ``ResponseParser.feed``
takes whatever one ``recv()`` returned and answers how many responses it
completed; it keeps its place between calls (a head, a body, a chunk cut
anywhere), so the engine never re-reads a byte.  Every response is checked:
the status line and every header line against RFC 9112's grammar, the framing
(``Content-Length`` or ``chunked``; two different lengths, a length together
with ``Transfer-Encoding`` or a body with neither are errors), the status
(2xx) and, where the route's answer is known, the body byte for byte.

Speed: this is the generator's hot path, so the common case is cheap.  A
server answers the same request with the same bytes but for its ``Date``
(once a second), so a worker remembers (``ParseCache``): the heads it has
parsed, and the whole ``recv()`` payloads that it read from a clean state to a
clean state (no byte left over, no ``Connection: close``) with how many
responses they held.  The same payload again is then one dict lookup (a hash
and a compare of bytes already fully checked once); otherwise one
``bytes.find`` finds each head's end, a head seen before is one lookup, and a
``Content-Length`` body that is all there is is checked with one
``startswith`` at an offset, without a copy.  A response cut by the network
takes the slower, stateful path.  Measured (one core of this 2-CPU VM, loaded):
a remembered payload 0.3 us, a new payload of one response 1.1-1.4 us,
a new 16-response payload 0.85-1.2 us per response.  No third-party parser: the generator stays
standard-library only (httptools is the server's optional extra).

Errors are ``ResponseError(kind, detail)`` with the engine's error kinds:
``status`` (a complete response whose status is not 2xx), ``mismatch`` (a
well-framed body that differs from the expected one), ``malformed`` (anything
that is not an HTTP/1.1 response: the stream can no longer be trusted).
"""

from __future__ import annotations

import re

MAX_HEAD = 64 * 1024  # bytes: the server's own limit on request heads (docs/http.md)
MAX_LINE = 4096  # bytes: a chunk-size or trailer line longer than this is garbage
CACHE_SIZE = 256  # heads (and payloads) remembered per worker before starting over
MEMO_MAX = 8192  # bytes: longer payloads are not remembered (an /echo of 1 MiB...)

# The body a route answers with, when it is fixed (docs/http.md); None: not checked.
PLAINTEXT_BODY = b"Hello, World!"
JSON_BODY = b'{"message":"Hello, World!"}'

# parser states
S_HEAD = 0  # before or inside a response head
S_BODY = 1  # inside a Content-Length body
S_CHUNK_SIZE = 2  # before or inside a chunk-size line
S_CHUNK_DATA = 3  # inside a chunk's data
S_CHUNK_END = 4  # the CRLF after a chunk's data
S_TRAILER = 5  # trailer lines after the last chunk, up to the empty line

# RFC 9112 section 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
# (the SP before an empty reason is tolerated, as every client does);
# RFC 9110 section 5: field-line = token ":" OWS field-value OWS.
_TEXT = rb"[\t \x21-\x7e\x80-\xff]*"
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_STATUS_RE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: " + _TEXT + rb")?")
_FIELD_RE = re.compile(_TOKEN + rb":" + _TEXT)
_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;" + _TEXT + rb")?")


class ResponseError(Exception):
    """A response the generator rejects; ``kind`` is one of the engine's error kinds.

    ``done`` is how many responses of the same ``feed`` were complete and
    correct before this one: they still count."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.done = 0


def _short(data: bytes, limit: int = 40) -> str:
    text = repr(data[:limit])
    return text + "..." if len(data) > limit else text


def parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """A response head (without its final CRLF CRLF) -> (status, length, chunked, close).

    ``length`` is the Content-Length (None without one); ``close`` says the
    server ends the connection after this response.  Raises ResponseError
    (malformed) on any line that breaks the grammar or framing that cannot be
    trusted (RFC 9112 section 6.3)."""
    lines = head.split(b"\r\n")
    status_line = _STATUS_RE.fullmatch(lines[0])
    if status_line is None:
        raise ResponseError("malformed", f"bad status line {_short(lines[0])}")
    minor, status = status_line.group(1), int(status_line.group(2))
    length: int | None = None
    chunked = False
    close = minor == b"0"  # HTTP/1.0: close unless the server says keep-alive
    for line in lines[1:]:
        if _FIELD_RE.fullmatch(line) is None:
            raise ResponseError("malformed", f"bad header line {_short(line)}")
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise ResponseError("malformed", f"bad Content-Length {_short(value)}")
            if length is not None and int(value) != length:
                raise ResponseError("malformed", "two different Content-Length values")
            length = int(value)
        elif name == b"transfer-encoding":
            if chunked or value.lower().rpartition(b",")[2].strip(b" \t") != b"chunked":
                # not chunked last: the body would end with the close (RFC 9112 6.3)
                raise ResponseError("malformed", f"Transfer-Encoding {_short(value)} (only chunked is read)")
            chunked = True
        elif name == b"connection":
            tokens = {t.strip(b" \t") for t in value.lower().split(b",")}
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens:
                close = False
    if chunked and length is not None:
        raise ResponseError("malformed", "both Content-Length and Transfer-Encoding (smuggling shape)")
    return status, length, chunked, close


class ParseCache:
    """What a worker's connections have already checked (see the module docstring)."""

    __slots__ = ("heads", "payloads")

    def __init__(self) -> None:
        self.heads: dict[bytes, tuple[int, int | None, bool, bool]] = {}  # head -> parse_head()
        self.payloads: dict[bytes, int] = {}  # clean-to-clean recv() payload -> responses in it


class ResponseParser:
    """Incremental reader of one connection's responses (see the module docstring).

    ``expected`` is every response's body (None: any body); ``head_request``:
    the requests are HEAD, the responses carry no body.  ``cache``: one
    ParseCache per worker, shared by its connections (whose parsers must then
    expect the same bodies).  After a response with ``Connection: close``,
    ``closing`` is True and another byte is an error.
    """

    __slots__ = ("expected", "head_request", "cache", "closing", "partial", "_buf", "_state", "_left", "_off")

    def __init__(
        self,
        expected: bytes | None,
        head_request: bool = False,
        cache: ParseCache | None = None,
    ) -> None:
        self.expected = expected
        self.head_request = head_request
        self.cache = ParseCache() if cache is None else cache
        self.reset()

    def reset(self) -> None:
        """A new connection: nothing buffered."""
        self.closing = False
        self.partial = False  # a response begun and not finished (bytes held or expected)
        self._buf = b""
        self._state = S_HEAD
        self._left = 0  # bytes still to come of this body or chunk
        self._off = 0  # bytes of this body seen so far

    def eof_detail(self) -> str:
        """What an EOF from the server means at this point."""
        if self.partial:
            return "EOF in the middle of a response (short body or head)"
        return "EOF (closed by the server)"

    def feed(self, data: bytes) -> int:
        """Read ``data``; return how many responses it completed.  Raises ResponseError."""
        clean = self._state == S_HEAD and not self._buf and not self.closing
        if clean:
            done = self.cache.payloads.get(data)
            if done is not None:
                return done
        elif self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        n = len(data)
        done = 0
        state = self._state
        expected = self.expected
        try:
            while pos < n:
                if self.closing:
                    raise ResponseError("malformed", "bytes after a response with Connection: close")
                if state == S_HEAD:
                    end = data.find(b"\r\n\r\n", pos)
                    if end < 0:
                        if not data.startswith(b"HTTP/"[: n - pos], pos):  # garbage: fail now, not at timeout
                            raise ResponseError("malformed", f"not an HTTP response: {_short(data[pos:])}")
                        if n - pos > MAX_HEAD:
                            raise ResponseError("malformed", f"response head over {MAX_HEAD} bytes")
                        self._buf = data[pos:]
                        self.partial = True
                        break
                    head = data[pos:end]
                    heads = self.cache.heads
                    info = heads.get(head)
                    if info is None:
                        info = parse_head(head)
                        if len(heads) >= CACHE_SIZE:
                            heads.clear()
                        heads[head] = info
                    status, length, chunked, close = info
                    pos = end + 4
                    if status < 200 and status != 101:
                        continue  # interim (100 Continue...): the real response follows
                    if status >= 300 or status < 200:
                        raise ResponseError("status", f"HTTP {status}")
                    self.closing = close
                    if self.head_request or status == 204:
                        done += 1
                        continue
                    if chunked:
                        state = S_CHUNK_SIZE
                        self._off = 0
                        self.partial = True
                        continue
                    if length is None:
                        raise ResponseError(
                            "malformed", "neither Content-Length nor chunked (a body ended by the close)"
                        )
                    if expected is not None and length != len(expected):
                        raise ResponseError("mismatch", f"Content-Length {length}, expected {len(expected)}")
                    if n - pos >= length:  # the fast path: the whole body is here
                        if expected is not None and length and not data.startswith(expected, pos):
                            raise ResponseError("mismatch", "body differs from the expected bytes")
                        pos += length
                        done += 1
                        self.partial = False
                        continue
                    state = S_BODY
                    self._left = length
                    self._off = 0
                    self.partial = True
                elif state in (S_BODY, S_CHUNK_DATA):
                    take = min(self._left, n - pos)
                    off = self._off
                    if expected is not None:
                        if off + take > len(expected):
                            raise ResponseError(
                                "mismatch", f"body longer than the expected {len(expected)} bytes"
                            )
                        if data[pos : pos + take] != expected[off : off + take]:
                            raise ResponseError("mismatch", "body differs from the expected bytes")
                    pos += take
                    self._off = off + take
                    self._left -= take
                    if self._left:
                        break  # the rest of it in a later recv
                    if state == S_BODY:
                        state = S_HEAD
                        done += 1
                        self.partial = False
                    else:
                        state = S_CHUNK_END
                elif state in (S_CHUNK_SIZE, S_TRAILER):
                    eol = data.find(b"\r\n", pos)
                    if eol < 0:
                        if n - pos > MAX_LINE:
                            raise ResponseError(
                                "malformed", f"chunk-size or trailer line over {MAX_LINE} bytes"
                            )
                        self._buf = data[pos:]
                        break
                    line = data[pos:eol]
                    pos = eol + 2
                    if state == S_TRAILER:
                        if line:
                            if _FIELD_RE.fullmatch(line) is None:
                                raise ResponseError("malformed", f"bad trailer line {_short(line)}")
                            continue
                        if expected is not None and self._off != len(expected):
                            raise ResponseError(
                                "mismatch", f"body of {self._off} bytes, expected {len(expected)}"
                            )
                        state = S_HEAD
                        done += 1
                        self.partial = False
                        continue
                    size = _CHUNK_SIZE_RE.fullmatch(line)
                    if size is None:
                        raise ResponseError("malformed", f"bad chunk-size line {_short(line)}")
                    self._left = int(size.group(1), 16)
                    state = S_CHUNK_DATA if self._left else S_TRAILER
                else:  # S_CHUNK_END
                    if n - pos < 2:
                        if data[pos:] != b"\r":
                            raise ResponseError("malformed", "chunk data not followed by CRLF")
                        self._buf = data[pos:]
                        break
                    if data[pos : pos + 2] != b"\r\n":
                        raise ResponseError("malformed", "chunk data not followed by CRLF")
                    pos += 2
                    state = S_CHUNK_SIZE
        except ResponseError as exc:
            exc.done = done  # the responses before it were correct: they count
            raise
        self._state = state
        if clean and done and state == S_HEAD and not self._buf and not self.closing and n <= MEMO_MAX:
            payloads = self.cache.payloads
            if len(payloads) >= CACHE_SIZE:
                payloads.clear()
            payloads[data] = done
        return done


def host_header(host: str, port: int) -> str:
    """The Host field for an address (IPv6 literals in brackets, RFC 9110 7.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_request(method: str, path: str, host: str, body: bytes = b"") -> bytes:
    """One HTTP/1.1 keep-alive request (a body only for POST, with its length)."""
    if method not in ("GET", "HEAD", "POST"):
        raise ValueError(f"unsupported method {method!r}; choose GET, HEAD or POST")
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"bad path {path!r}: origin form, e.g. /plaintext")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if method == "POST":
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body
    return f"{head}\r\n".encode("ascii")


def expected_body(method: str, path: str, body: bytes) -> bytes | None:
    """The body the built-in routes answer (docs/http.md), None where it is not fixed."""
    route = path.partition("?")[0]
    if method == "HEAD":
        return b""
    if method == "GET" and route == "/plaintext":
        return PLAINTEXT_BODY
    if method == "GET" and route == "/json":
        return JSON_BODY
    if method == "POST" and route == "/echo":
        return body
    if method == "POST" and route == "/upper" and body.isascii():
        return body.upper()
    return None
