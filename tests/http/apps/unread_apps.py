"""The app of tests/http/test_wsgi_unread_and_short.py (``--app unread_apps:app``):
an app that answers without reading its request body, and bodies that do not
match their Content-Length.

    /noread       401 without touching wsgi.input (an auth check that fails)
    /short        Content-Length: 100, a list of 5 bytes
    /short-gen    Content-Length: 100, a generator of 5 bytes
    /long         Content-Length: 3, a list of 7 bytes
    /long-gen     Content-Length: 3, a generator of 7 bytes
    anything else 200, its path as the body
"""

from __future__ import annotations


def _blocks(*blocks: bytes):
    yield from blocks


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/noread":
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [b"unauthorized\n"]
    if path in ("/short", "/short-gen"):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"short"] if path == "/short" else _blocks(b"sh", b"ort")
    if path in ("/long", "/long-gen"):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"toolong"] if path == "/long" else _blocks(b"too", b"long")
    body = path.encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
