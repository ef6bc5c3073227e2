"""What the WSGI path keeps between requests (a connection's fields and their
environ, decoded targets, the common head for the second) must never leak
one request's answer into the next: requests that differ in one thing at a
time on one connection, over the fake transport, inline mode."""

from __future__ import annotations

from fake import FakeTransport
from wire import split_response

from iomodels.protocols.http.protocol import HttpProtocol, HttpSettings
from iomodels.protocols.http.wsgi import WsgiApp

HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "2")]


def test_a_connections_requests_each_see_their_own_environ_and_head() -> None:
    seen: list[dict] = []

    def app(environ, start_response):
        seen.append(dict(environ))
        environ["HTTP_HOST"] = "changed by the app"  # its own copy: not the next request's
        start_response("200 OK", HEADERS)
        return [b"ok"]

    protocol = HttpProtocol(HttpSettings(wsgi=WsgiApp(app, "inline")))
    transport = FakeTransport()
    protocol.connection_made(transport)
    requests = [
        b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Extra: 1\r\n\r\n",
        b"HEAD /a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /c HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
        b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ]
    heads = []
    for request in requests:
        protocol.data_received(request)
        head, _, body = transport.take().partition(b"\r\n\r\n")
        heads.append((head, body))
    assert [(e["REQUEST_METHOD"], e["PATH_INFO"], e["QUERY_STRING"]) for e in seen] == [
        ("GET", "/a b", "x=1"),
        ("GET", "/a b", "x=1"),
        ("GET", "/a b", "x=1"),
        ("HEAD", "/a b", "x=1"),
        ("GET", "/c", ""),
        ("GET", "/c", ""),
    ]
    assert all(e["HTTP_HOST"] == "h" for e in seen)
    assert ["HTTP_X_EXTRA" in e for e in seen] == [False, False, True, False, False, False]
    assert [e["SERVER_PROTOCOL"] for e in seen] == ["HTTP/1.1"] * 4 + ["HTTP/1.0", "HTTP/1.1"]
    assert [body for _, body in heads] == [b"ok", b"ok", b"ok", b"", b"ok", b"ok"]
    assert heads[0][0] == heads[1][0] and b"Connection" not in heads[0][0]
    assert b"Connection: keep-alive" in heads[4][0] and b"Connection: close" in heads[5][0]
    for head, body in heads:
        response, rest = split_response(head + b"\r\n\r\n" + body, head_only=not body)
        assert rest == b""
        assert response.status == 200 and response.headers[b"content-length"] == b"2"
    assert transport.closed  # after the Connection: close request
