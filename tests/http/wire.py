"""A strict, small HTTP/1.1 response reader for the socket tests: it checks
every status line and framing it reads, so that a test (and the fuzz test)
fails on any malformed answer."""

from __future__ import annotations

import re
import socket
import time

STATUS_RE = re.compile(rb"^HTTP/1\.1 ([1-5]\d\d) [^\r\n]*$")
TIMEOUT_S = 10.0


class Response:
    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:40]!r}>"


def split_response(buf: bytes, head_only: bool = False, at_eof: bool = False):
    """(Response, rest) if ``buf`` starts with a whole response, else None.
    Raises AssertionError on anything that is not a valid HTTP/1.1 response.
    Works on offsets, copying only a complete response: a reader calls it
    again on every recv() of a large body."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        assert len(buf) < 70_000, "response head too long"
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    match = STATUS_RE.match(lines[0])
    assert match, f"bad status line {lines[0]!r}"
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b": ")
        assert sep and name and b" " not in name, f"bad header line {line!r}"
        headers[name.lower()] = value
    status = int(match.group(1))
    start = end + 4
    if head_only or status < 200 or status in (204, 304):
        return Response(status, headers, b""), buf[start:]
    assert b"date" in headers and b"server" in headers, headers
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        if len(buf) < start + n:
            return None
        return Response(status, headers, bytes(buf[start : start + n])), buf[start + n :]
    if headers.get(b"transfer-encoding") == b"chunked":
        spans = []
        pos = start
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol], 16)
            if size == 0:
                if len(buf) < eol + 4:
                    return None
                assert buf[eol + 2 : eol + 4] == b"\r\n", "no CRLF after the last chunk"
                body = b"".join(buf[a : a + n] for a, n in spans)
                return Response(status, headers, body), buf[eol + 4 :]
            if len(buf) < eol + 4 + size:
                return None
            spans.append((eol + 2, size))
            assert buf[eol + 2 + size : eol + 4 + size] == b"\r\n", "chunk not followed by CRLF"
            pos = eol + 4 + size
    assert headers.get(b"connection") == b"close", "a body with no length must end with the connection"
    if not at_eof:
        return None
    return Response(status, headers, bytes(buf[start:])), b""


def read_responses(sock: socket.socket, count: int, head_only=(), timeout: float = TIMEOUT_S):
    """Read ``count`` responses (indexes in ``head_only`` answer HEAD requests)."""
    responses: list[Response] = []
    buf = bytearray()  # grows in place: a large body costs no quadratic copying
    eof = False
    deadline = time.monotonic() + timeout
    while len(responses) < count:
        parsed = split_response(buf, len(responses) in head_only, eof)
        if parsed is not None:
            responses.append(parsed[0])
            buf = bytearray(parsed[1])
            continue
        assert not eof, f"EOF after {len(responses)} of {count} responses; left {buf[:200]!r}"
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {len(responses)} of {count} responses"
        sock.settimeout(left)
        chunk = sock.recv(1024 * 1024)
        eof = not chunk
        buf += chunk
    assert not buf, f"unexpected bytes after the responses: {buf[:200]!r}"
    return responses


def closed_by_peer(sock: socket.socket, timeout: float = TIMEOUT_S) -> bool:
    """True if the server closes within ``timeout`` (all data read and dropped)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def get(path: bytes, *headers: bytes, method: bytes = b"GET", version: bytes = b"1.1") -> bytes:
    lines = [b"%s %s HTTP/%s" % (method, path, version), b"Host: test", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def post(path: bytes, body: bytes, *headers: bytes, version: bytes = b"1.1") -> bytes:
    return get(path, b"Content-Length: %d" % len(body), *headers, method=b"POST", version=version) + body
