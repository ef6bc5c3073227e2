"""The hello-world apps every HTTP server in the comparison serves.

Each answers ``GET /plaintext`` with ``Hello, World!`` (text/plain, with a
Content-Length), the TechEmpower plaintext shape, and ``GET /health`` with 200.
They do as little as a WSGI or ASGI app can, so that the table measures the
server, not the app.
"""

from __future__ import annotations

BODY = b"Hello, World!"
_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
_NOT_FOUND = [("Content-Type", "text/plain"), ("Content-Length", "9")]


def wsgi_hello(environ, start_response):
    """PEP 3333 hello world (gunicorn, waitress, granian, iomodels --app)."""
    if environ.get("PATH_INFO") in ("/plaintext", "/health", "/"):
        start_response("200 OK", _HEADERS)
        return [BODY]
    start_response("404 Not Found", _NOT_FOUND)
    return [b"not found"]


_ASGI_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
}
_ASGI_BODY = {"type": "http.response.body", "body": BODY}
_ASGI_404 = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")],
}


async def asgi_hello(scope, receive, send):
    """ASGI hello world (uvicorn)."""
    if scope["type"] != "http":  # lifespan: nothing to set up
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    if scope["path"] in ("/plaintext", "/health", "/"):
        await send(_ASGI_START)
        await send(_ASGI_BODY)
    else:
        await send(_ASGI_404)
        await send({"type": "http.response.body", "body": b"not found"})
