"""The sans-IO core, without sockets: each input whole, byte by byte, and
followed by another request (h11's test_io.py::tr()), since every model cuts
the stream at different places."""

from __future__ import annotations

import pytest

from iomodels.protocols.http.core import (
    END_OF_MESSAGE,
    NEED_DATA,
    HttpConnection,
    Limits,
    Request,
    http_date,
)

TRAILER = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
TRAILER_EVENTS = [("request", b"GET", b"/next", "1.1", True), END_OF_MESSAGE]


def drain(conn: HttpConnection) -> list:
    """Events as comparable tuples; adjacent body pieces joined."""
    out: list = []
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, Request):
            out.append(("request", event.method, event.target, event.http_version, event.keep_alive))
        elif isinstance(event, bytes):
            if out and isinstance(out[-1], bytes):
                out[-1] += event
            else:
                out.append(event)
        elif event is END_OF_MESSAGE:
            out.append(event)
        else:
            out.append(("error", event.status))
    return out


def feed(data: bytes, mode: str, limits: Limits | None = None) -> list:
    conn = HttpConnection(limits)
    if mode == "whole":
        conn.receive_data(data)
    elif mode == "bytewise":
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
    else:
        conn.receive_data(data + TRAILER)
    return drain(conn)


def expect(data: bytes, events: list, mode: str, limits: Limits | None = None) -> None:
    got = feed(data, mode, limits)
    is_error = any(isinstance(e, tuple) and e[0] == "error" for e in events)
    closes = not events[0][4]  # no keep-alive: what follows is never parsed
    if mode == "trailing" and not is_error and not closes:
        events = events + TRAILER_EVENTS
    assert got == events


MODES = ["whole", "bytewise", "trailing"]

GOOD = {
    "get": (b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n", [("request", b"GET", b"/plaintext", "1.1", True)]),
    "query": (b"GET /json?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", [("request", b"GET", b"/json?x=1", "1.1", True)]),
    "http10": (b"GET / HTTP/1.0\r\n\r\n", [("request", b"GET", b"/", "1.0", False)]),
    "http10_keepalive": (
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        [("request", b"GET", b"/", "1.0", True)],
    ),
    "close": (
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        [("request", b"GET", b"/", "1.1", False)],
    ),
    "content_length": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        [("request", b"POST", b"/echo", "1.1", True), b"hello"],
    ),
    "chunked": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nT: v\r\n\r\n",
        [("request", b"POST", b"/echo", "1.1", True), b"abcde"],
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(GOOD))
def test_good_requests(case: str, mode: str) -> None:
    data, events = GOOD[case]
    expect(data, [*events, END_OF_MESSAGE], mode)


def test_pipelined_requests_come_out_in_order() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5))
    for mode in ("whole", "bytewise"):
        got = feed(data, mode)
        assert [e[2] for e in got if isinstance(e, tuple)] == [b"/%d" % i for i in range(5)]


def test_request_fields_that_shape_the_answer() -> None:
    conn = HttpConnection()
    conn.receive_data(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\nX-A: b\r\n\r\n"
    )
    request = conn.next_event()
    assert request.expect_continue and request.content_length == 3 and not request.chunked
    assert request.headers[-1] == (b"X-A", b"b")
    assert request.path == b"/echo" and request.has_body
    assert conn.next_event() is NEED_DATA  # the body has not arrived
    conn.receive_data(b"abc")
    assert conn.next_event() == b"abc" and conn.next_event() is END_OF_MESSAGE


def test_upgrade_is_answered_and_parsing_stops() -> None:
    conn = HttpConnection()
    conn.receive_data(
        b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x00"
    )
    request = conn.next_event()
    assert request.upgrade and conn.next_event() is END_OF_MESSAGE and conn.next_event() is NEED_DATA
    conn.receive_data(TRAILER)  # another protocol's bytes: never parsed as HTTP
    assert conn.next_event() is NEED_DATA


BIG = 64 * 1024
BAD = {
    "garbage": (b"GARBAGE\r\n\r\n", 400),
    "bad_request_line": (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    "bare_lf": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bad_header_name": (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
    "header_without_colon": (b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400),
    "too_many_fields": (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: v\r\n" * 101 + b"\r\n", 431),
    "huge_field": (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * BIG + b"\r\n\r\n", 431),
    "huge_target": (b"GET /" + b"a" * BIG + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    "no_host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two_hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    "two_hosts_1_0": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    "content_length_over_max": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413),
    "chunked_over_max": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n"
        + b"a" * 1001
        + b"\r\n0\r\n\r\n",
        413,
    ),
    "unknown_coding": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    "unknown_coding_then_chunked": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "length_and_chunked": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "chunked_and_length": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
    ),
    "two_lengths": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "negative_length": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    "bad_chunk_size": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "http2": (b"GET / HTTP/2.0\r\n\r\n", 505),
    "http09": (b"GET /\r\n\r\n", 505),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_give_one_status_and_nothing_after(case: str, mode: str) -> None:
    data, status = BAD[case]
    got = feed(data, mode, Limits(max_body=1000))
    assert got and got[-1] == ("error", status), got
    assert sum(1 for e in got if isinstance(e, tuple) and e[0] == "error") == 1
    assert not any(isinstance(e, tuple) and e[:3] == ("request", b"GET", b"/next") for e in got)


def test_error_is_sticky() -> None:
    conn = HttpConnection()
    conn.receive_data(b"BAD\r\n\r\n")
    assert drain(conn) == [("error", 400)]
    conn.receive_data(TRAILER)
    assert conn.next_event() is NEED_DATA


def test_eof_mid_request_is_an_error_and_between_requests_is_not() -> None:
    conn = HttpConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    conn.receive_data(b"")
    assert [e for e in drain(conn) if isinstance(e, tuple)] == [("request", b"GET", b"/", "1.1", True)]
    conn = HttpConnection()
    conn.receive_data(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nabc")
    conn.receive_data(b"")
    assert drain(conn)[-1] == ("error", 400)


def test_head_deadline_cuts_a_trickle() -> None:
    """A slowloris: a byte a second keeps any idle timer happy; the deadline does not."""
    conn = HttpConnection(Limits(header_timeout_s=10))
    head = b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 30
    for second, byte in enumerate(head):
        conn.receive_data(bytes([byte]), now=100.0 + second)
        if conn.state == "ERROR":
            break
    assert drain(conn) == [("error", 408)]
    assert second == 11  # the first byte after the 10 s deadline


def test_head_within_the_deadline_passes() -> None:
    conn = HttpConnection(Limits(header_timeout_s=10))
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: t\r\n", now=0.0)
    conn.receive_data(b"\r\n", now=9.5)
    assert drain(conn)[-1] is END_OF_MESSAGE
    # The clock starts at each request's first byte, not at the connection's.
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: t\r\n", now=50.0)
    conn.receive_data(b"X: 1\r\n", now=59.9)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"Y: 2\r\n", now=60.1)
    assert drain(conn) == [("error", 408)]


def test_slow_body_is_cut_after_the_grace() -> None:
    conn = HttpConnection(Limits(min_body_rate=100, body_rate_grace_s=5))
    conn.receive_data(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", now=0.0)
    for second in range(1, 20):
        conn.receive_data(b"x" * 50, now=float(second))  # 50 B/s
        if conn.state == "ERROR":
            break
    assert second == 6 and drain(conn)[-1] == ("error", 408)


def test_fast_body_passes_and_paused_time_is_forgiven() -> None:
    conn = HttpConnection(Limits(min_body_rate=100, body_rate_grace_s=5))
    conn.receive_data(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", now=0.0)
    conn.receive_data(b"x" * 1000, now=6.0)
    conn.restart_body_clock(60.0)  # we paused reading for 54 s: not the peer's fault
    conn.receive_data(b"x" * 1000, now=66.0)
    assert conn.state == "BODY"


def test_response_framing() -> None:
    request = HttpConnection()
    request.receive_data(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    r11 = request.next_event()
    head, chunked, keep_alive = HttpConnection.response_head(r11, 200, [(b"A", b"b")], 5, b"D")
    assert head == b"HTTP/1.1 200 OK\r\nServer: iomodels\r\nDate: D\r\nA: b\r\nContent-Length: 5\r\n\r\n"
    assert (chunked, keep_alive) == (False, True)
    head, chunked, keep_alive = HttpConnection.response_head(r11, 200, (), None, b"D")
    assert b"Transfer-Encoding: chunked\r\n" in head and chunked and keep_alive
    assert HttpConnection.response_data(b"abc", True) == b"3\r\nabc\r\n"
    assert HttpConnection.response_end(True) == b"0\r\n\r\n"
    head, _, keep_alive = HttpConnection.response_head(r11, 400, (), 0, b"D", close=True)
    assert head.endswith(b"Connection: close\r\n\r\n") and not keep_alive


def test_http10_streamed_response_is_close_delimited() -> None:
    conn = HttpConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r10 = conn.next_event()
    head, chunked, keep_alive = HttpConnection.response_head(r10, 200, (), 3, b"D")
    assert head.endswith(b"Connection: keep-alive\r\n\r\n") and keep_alive
    head, chunked, keep_alive = HttpConnection.response_head(r10, 200, (), None, b"D")
    assert not chunked and not keep_alive and b"Transfer-Encoding" not in head


def test_http_date_is_imf_fixdate() -> None:
    assert http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1_700_000_000.7) == b"Tue, 14 Nov 2023 22:13:20 GMT"
