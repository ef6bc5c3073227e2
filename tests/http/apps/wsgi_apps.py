"""WSGI apps the tests serve with ``--app wsgi_apps:NAME`` (this directory is
put on the server's PYTHONPATH).

``app`` routes by path; ``validated`` is the same app under
``wsgiref.validate.validator``, which asserts PEP 3333 on both sides (the
server's environ and calls as much as the app's).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from wsgiref.validate import validator

BODY = b"Hello, World!"
_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]

# Where /slow's iterable notes that close() was called: a test reads it.
CLOSE_LOG = os.environ.get("WSGI_TEST_CLOSE_LOG", "")


def wsgi_hello(environ, start_response):
    """PEP 3333 hello world (iomodels/webbench/apps.py on main)."""
    if environ.get("PATH_INFO") in ("/plaintext", "/health", "/"):
        start_response("200 OK", _HELLO_HEADERS)
        return [BODY]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


class Blocks:
    """An iterable of ``count`` blocks of ``size`` bytes, generated on the
    fly (never held), that records its close()."""

    def __init__(self, count: int, size: int, delay_s: float = 0.0, tag: str = "") -> None:
        self.count = count
        self.block = bytes(range(256)) * (size // 256)
        self.delay_s = delay_s
        self.tag = tag

    def __iter__(self):
        for _ in range(self.count):
            if self.delay_s:
                time.sleep(self.delay_s)
            yield self.block

    def close(self) -> None:
        if self.tag and CLOSE_LOG:
            with open(CLOSE_LOG, "a") as log:
                log.write(f"closed {self.tag}\n")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path == "/plaintext":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, ", b"World!"]
    if path == "/environ":
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "CONTENT_TYPE",
                "CONTENT_LENGTH", "HTTP_X_TEST", "SCRIPT_NAME", "REMOTE_ADDR")  # fmt: skip
        data = json.dumps({k: environ.get(k) for k in keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/upload":  # reads the body in pieces, answers its size and sha256
        digest = hashlib.sha256()
        size = 0
        stream = environ["wsgi.input"]
        while piece := stream.read(100_000):
            digest.update(piece)
            size += len(piece)
        data = f"{size} {digest.hexdigest()}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
        return [data]
    if path == "/lines":  # readline() and iteration over wsgi.input
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = list(stream)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d|%s|%d" % (len(first), first.strip(), len(rest))]
    if path == "/stream":  # ?count=N&size=S: N blocks of S bytes, no Content-Length
        query = dict(part.split("=") for part in environ["QUERY_STRING"].split("&") if "=" in part)
        count, size = int(query.get("count", 4)), int(query.get("size", 65536))
        delay = float(query.get("delay", 0))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Blocks(count, size, delay, tag=query.get("tag", ""))
    if path == "/raise":
        raise RuntimeError("the app failed on purpose")
    if path == "/raise-late":

        def late():
            yield b"first block"
            raise RuntimeError("the app failed on purpose, after its headers")

        start_response("200 OK", [("Content-Type", "text/plain")])
        return late()
    if path == "/file":
        wrapper = environ["wsgi.file_wrapper"]
        handle = open(__file__, "rb")  # noqa: SIM115 - the wrapper closes it
        start_response("200 OK", [("Content-Type", "text/plain")])
        return wrapper(handle, 1024)
    if path == "/write":  # the legacy write() callable, then an iterable
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"then returned"]
    if path == "/created":
        start_response("201 Created", [("Content-Type", "text/plain"), ("Location", "/x")])
        return [b"made"]
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if method == "POST" and path == "/echo":
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


validated = validator(app)
