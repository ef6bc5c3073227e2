"""The http protocol over a fake transport (no sockets): routes, ordering,
writes, timers and back-pressure, as uvicorn tests its protocols."""

from __future__ import annotations

import json

import pytest
from fake import FakeTransport

from iomodels.core.server import ServerState
from iomodels.protocols.http import protocol as http_protocol
from iomodels.protocols.http.core import Limits
from iomodels.protocols.http.protocol import HttpProtocol, HttpSettings
from iomodels.protocols.upper import upper_reference


def connect(state=None, limits=None, keepalive=5.0):
    proto = HttpProtocol(HttpSettings(state, limits, keepalive))
    transport = FakeTransport()
    transport.protocol = proto
    proto.connection_made(transport)
    return proto, transport


def parse_responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split a byte stream into (status, headers, body); chunked bodies decoded.
    Assumes no HEAD responses in ``data``."""
    out = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete head {head!r}"
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 "), lines[0]
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b": ")
            headers[name.lower()] = value
        if status == 100:
            out.append((status, headers, b""))
            continue
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            body, data = data[:n], data[n:]
        elif headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    assert data.startswith(b"\r\n")
                    data = data[2:]
                    break
                body += data[:size]
                assert data[size : size + 2] == b"\r\n"
                data = data[size + 2 :]
        else:
            body, data = data, b""
        out.append((status, headers, body))
    return out


def test_plaintext_and_json_follow_techempower() -> None:
    proto, t = connect()
    proto.data_received(b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n")
    [(status, headers, body)] = parse_responses(t.take())
    assert (status, body) == (200, b"Hello, World!")
    assert headers[b"content-type"] == b"text/plain" and headers[b"server"] == b"iomodels"
    assert headers[b"date"].endswith(b" GMT") and headers[b"content-length"] == b"13"
    proto.data_received(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
    [(status, headers, body)] = parse_responses(t.take())
    assert json.loads(body) == {"message": "Hello, World!"}
    assert headers[b"content-type"] == b"application/json"
    assert not t.closed


def test_pipelined_batch_is_answered_in_order_with_one_write() -> None:
    proto, t = connect()
    paths = [b"/plaintext", b"/json", b"/nope", b"/health", b"/plaintext"] * 4
    proto.data_received(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p for p in paths))
    responses = parse_responses(t.take())
    assert [r[0] for r in responses] == [200, 200, 404, 200, 200] * 4
    assert t.writes == 1


def test_index_names_the_model_and_every_route() -> None:
    proto, t = connect(ServerState("epoll", "http"))
    proto.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    [(status, headers, body)] = parse_responses(t.take())
    assert status == 200 and headers[b"content-type"].startswith(b"text/html")
    for text in (b"epoll", b"/plaintext", b"/json", b"/echo", b"/upper", b"/health"):
        assert text in body
    proto, t = connect()  # no server state: a protocol outside a server
    proto.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert b"unknown" in t.take()


def test_health_turns_503_once_stopping_and_closes() -> None:
    state = ServerState("poll", "http")
    proto, t = connect(state)
    proto.data_received(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    [(status, _, _)] = parse_responses(t.take())
    assert status == 200 and not t.closed
    state.stopping = True
    proto.data_received(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    [(status, headers, _)] = parse_responses(t.take())
    assert status == 503 and headers[b"connection"] == b"close" and t.closed


def test_head_has_the_get_headers_and_no_body() -> None:
    proto, t = connect()
    proto.data_received(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
    get_head = t.take().partition(b"\r\n\r\n")[0]
    proto.data_received(b"HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n")
    data = t.take()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head == get_head
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b'{"message":"Hello, World!"}')


def test_absolute_form_targets_reach_the_routes() -> None:
    proto, t = connect()
    for target in (b"http://a:8/plaintext", b"HTTP://a/plaintext?x=1", b"http://a", b"http://a?q", b"*"):
        proto.data_received(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
    statuses = [r[0] for r in parse_responses(t.take())]
    assert statuses == [200, 200, 200, 200, 404]


def test_wrong_method_is_405_with_allow_and_keeps_the_connection() -> None:
    proto, t = connect()
    proto.data_received(
        b"POST /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    [(s1, h1, _), (s2, h2, _)] = parse_responses(t.take())
    assert (s1, h1[b"allow"]) == (405, b"GET, HEAD")
    assert (s2, h2[b"allow"]) == (405, b"POST")
    assert not t.closed


def test_echo_streams_each_piece_as_a_chunk() -> None:
    proto, t = connect()
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
    first = t.take()
    assert first.endswith(b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    proto.data_received(b"world")
    assert t.take() == b"5\r\nworld\r\n0\r\n\r\n"


def test_upper_keeps_a_character_split_across_pieces() -> None:
    text = "straße é ǆ".encode()
    proto, t = connect()
    proto.data_received(b"POST /upper HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(len(text)):
        proto.data_received(b"1\r\n%s\r\n" % text[i : i + 1])
    proto.data_received(b"0\r\n\r\n")
    [(status, _, body)] = parse_responses(t.take())
    assert status == 200 and body == upper_reference(text)


def test_upper_incomplete_character_at_the_end_comes_back() -> None:
    proto, t = connect()
    proto.data_received(b"POST /upper HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na\xc3\xa9")
    proto.data_received(b"POST /upper HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nb\xc3")
    [(_, _, one), (_, _, two)] = parse_responses(t.take())
    assert (one, two) == ("AÉ".encode(), b"B\xc3")


def test_empty_echo_is_a_plain_empty_response() -> None:
    proto, t = connect()
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    [(status, headers, body)] = parse_responses(t.take())
    assert (status, headers[b"content-length"], body) == (200, b"0", b"")


def test_expect_continue_is_sent_once_before_the_body() -> None:
    proto, t = connect()
    proto.data_received(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert t.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    proto.data_received(b"ok")
    [(status, _, body)] = parse_responses(t.take())
    assert (status, body) == (200, b"ok") and not t.closed


def test_expect_continue_is_ignored_without_a_body_or_from_http10() -> None:
    proto, t = connect()
    proto.data_received(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"
    )
    proto.data_received(b"GET /nope HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n")
    data = t.take()
    assert b"100 Continue" not in data and not t.closed
    assert [r[0] for r in parse_responses(data)] == [200, 404]
    proto.data_received(
        b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert t.take() == b""  # no 100 for HTTP/1.0: the client sends its body anyway
    proto.data_received(b"ok")
    assert t.take().endswith(b"\r\n\r\nok")


def test_expect_continue_refused_closes_after_the_answer() -> None:
    proto, t = connect()
    proto.data_received(
        b"POST /nope HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    [(status, headers, _)] = parse_responses(t.take())
    assert status == 404 and headers[b"connection"] == b"close"
    proto.data_received(b"ok")  # the body may come or not: either way the answer stands
    assert t.closed


def test_http10_echo_is_close_delimited() -> None:
    proto, t = connect()
    proto.data_received(b"POST /echo HTTP/1.0\r\nContent-Length: 4\r\n\r\nab")
    proto.data_received(b"cd")
    data = t.take()
    assert b"Transfer-Encoding" not in data and b"Connection: close\r\n" in data
    assert data.endswith(b"\r\n\r\nabcd") and t.closed


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n", 413),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    ],
)
def test_bad_input_is_one_status_and_a_close(request_bytes: bytes, status: int) -> None:
    proto, t = connect(limits=Limits(max_body=1000))
    proto.data_received(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n" + request_bytes)
    [(ok, _, _), (got, headers, _)] = parse_responses(t.take())
    assert (ok, got, headers[b"connection"]) == (200, status, b"close") and t.closed


def test_body_over_the_limit_after_the_answer_started_cuts_it() -> None:
    proto, t = connect(limits=Limits(max_body=10))
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert t.take().endswith(b"5\r\nhello\r\n")
    proto.data_received(b"6\r\nworld!\r\n")
    assert t.take() == b"" and t.closed  # no last chunk: the client sees it cut


def test_eof_answers_what_came_then_closes() -> None:
    proto, t = connect()
    proto.data_received(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
    assert proto.eof_received() is None  # the transport flushes and closes
    assert t.take().endswith(b"Hello, World!")


def test_upgrade_is_answered_with_close() -> None:
    proto, t = connect()
    proto.data_received(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
    [(status, headers, _)] = parse_responses(t.take())
    assert status == 200 and headers[b"connection"] == b"close" and t.closed


# ---- timers (transport.set_idle_timeout) and back-pressure


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(http_protocol, "_monotonic", lambda: now[0])
    return now


def test_timers_keepalive_after_a_response_and_header_deadline_inside_a_head(clock) -> None:
    proto, t = connect(limits=Limits(header_timeout_s=10), keepalive=5)
    assert t.timeouts == [10]  # waiting for the first request: the header timeout
    proto.data_received(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
    assert t.timeouts == [10, 5]
    for _ in range(3):  # whole requests: no timer call at all
        proto.data_received(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
    assert t.timeouts == [10, 5]
    proto.data_received(b"GET /plain")
    clock[0] += 4
    proto.data_received(b"text HTTP/1.1\r\nHost: t\r\n")
    assert t.timeouts[-2:] == [10, 6]  # what is left since the head's first byte
    proto.data_received(b"\r\n")
    assert t.timeouts[-1] == 5


def test_slowloris_is_cut_at_the_header_deadline(clock) -> None:
    proto, t = connect(limits=Limits(header_timeout_s=10))
    for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 40:
        if t.closed:
            break
        clock[0] += 1
        proto.data_received(bytes([byte]))
    assert t.closed
    [(status, _, _)] = parse_responses(t.take())
    assert status == 408


def test_body_timer_and_pause_on_back_pressure(clock) -> None:
    proto, t = connect(limits=Limits(header_timeout_s=10))
    t.hold = True
    t.high_water = 1000
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 500)
    assert t.timeouts[-1] == 10 and not t.paused  # inside a body: a stall limit
    proto.data_received(b"x" * 1000)
    assert t.paused and t.timeouts[-1] is None  # our output is backed up: no timer
    clock[0] += 60  # the peer waited on us: not slow
    t.hold = False
    proto.resume_writing()
    assert not t.paused and t.timeouts[-1] == 10
    proto.data_received(b"x" * 1000)
    assert not t.closed


class LaterHandler:
    """A handler that answers only when told to (as a WSGI app on a worker will)."""

    instances: list = []

    def __init__(self, protocol, request) -> None:
        self.protocol = protocol
        LaterHandler.instances.append(self)

    def body(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        pass

    def answer(self) -> None:
        self.protocol.respond(200, ((b"Content-Type", b"text/plain"),), b"later")


def test_a_late_answer_holds_the_pipeline_in_order(monkeypatch) -> None:
    from iomodels.protocols.http import routes

    monkeypatch.setitem(routes.ROUTES, b"/later", (routes.GET, LaterHandler, "test"))
    LaterHandler.instances.clear()
    proto, t = connect()
    later, plain = b"GET /later HTTP/1.1\r\nHost: t\r\n\r\n", b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
    proto.data_received(later + plain + later)
    assert t.take() == b"" and t.paused and t.timeouts[-1] is None
    LaterHandler.instances[0].answer()  # from "a worker": outside data_received
    responses = parse_responses(t.take())
    assert [r[2] for r in responses] == [b"later", b"Hello, World!"]
    assert t.paused and len(LaterHandler.instances) == 2
    assert proto.eof_received() is True  # a response is still owed: keep the connection
    LaterHandler.instances[1].answer()
    assert parse_responses(t.take())[0][2] == b"later" and t.closed
