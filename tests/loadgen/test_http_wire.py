"""The generator's HTTP response parser (loadgen/http_wire.py), without sockets.

Every input is fed whole, byte by byte and at every split point: each model
cuts the stream at different places, and the parser keeps its place.
"""

from __future__ import annotations

import pytest

from iomodels.loadgen.http_wire import (
    JSON_BODY,
    PLAINTEXT_BODY,
    ParseCache,
    ResponseError,
    ResponseParser,
    build_request,
    expected_body,
    host_header,
    parse_head,
)

DATE = b"Date: Mon, 30 Nov 2026 14:57:55 GMT\r\n"
PLAIN = (
    b"HTTP/1.1 200 OK\r\nServer: iomodels\r\n" + DATE + b"Content-Type: text/plain\r\n"
    b"Content-Length: 13\r\n\r\nHello, World!"
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nServer: iomodels\r\n" + DATE + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
)


def feed_all(parser: ResponseParser, data: bytes, step: int | None = None) -> int:
    """Feed ``data`` in pieces of ``step`` bytes (all at once if None); total responses."""
    if step is None:
        return parser.feed(data)
    return sum(parser.feed(data[k : k + step]) for k in range(0, len(data), step))


def splits(data: bytes):
    """Every way to cut ``data`` in two, then byte by byte."""
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]
    yield [data[k : k + 1] for k in range(len(data))]


@pytest.mark.parametrize("step", [None, 1, 7])
def test_plaintext_whole_and_cut(step: int | None) -> None:
    parser = ResponseParser(PLAINTEXT_BODY)
    assert feed_all(parser, PLAIN, step) == 1
    assert not parser.partial and not parser.closing


def test_every_split_point_of_a_pipelined_batch() -> None:
    batch = PLAIN * 4
    for pieces in splits(batch):
        parser = ResponseParser(PLAINTEXT_BODY)
        counts = [parser.feed(p) for p in pieces]
        assert sum(counts) == 4, pieces
        assert not parser.partial
    # a response completes with the byte that ends it, not before
    parser = ResponseParser(PLAINTEXT_BODY)
    assert parser.feed(PLAIN[:-1]) == 0 and parser.partial
    assert parser.feed(PLAIN[-1:] + PLAIN[:5]) == 1 and parser.partial


@pytest.mark.parametrize("step", [None, 1, 3, 11])
def test_chunked_body_with_extensions_and_trailers(step: int | None) -> None:
    parser = ResponseParser(b"hello world")
    assert feed_all(parser, CHUNKED * 2, step) == 2
    assert not parser.partial


def test_chunked_every_split_point() -> None:
    for pieces in splits(CHUNKED + PLAIN.replace(b"Hello, World!", b"hello world").replace(b"13", b"11")):
        parser = ResponseParser(b"hello world")
        assert sum(parser.feed(p) for p in pieces) == 2


def test_unchecked_body_and_head_request() -> None:
    assert ResponseParser(None).feed(PLAIN.replace(b"Hello", b"Howdy")) == 1
    head_only = PLAIN[: PLAIN.index(b"\r\n\r\n") + 4]
    parser = ResponseParser(b"", head_request=True)
    assert parser.feed(head_only * 3) == 3 and not parser.partial


def test_interim_100_continue_is_skipped() -> None:
    assert ResponseParser(PLAINTEXT_BODY).feed(b"HTTP/1.1 100 Continue\r\n\r\n" + PLAIN) == 1


def test_connection_close_and_http10() -> None:
    closing = PLAIN.replace(b"Server", b"Connection: close\r\nServer")
    parser = ResponseParser(PLAINTEXT_BODY)
    assert parser.feed(closing) == 1 and parser.closing
    with pytest.raises(ResponseError) as exc:
        parser.feed(b"H")
    assert exc.value.kind == "malformed"
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0")[3] is True
    assert parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0")[3] is False


def bad(data: bytes, expected: bytes | None = PLAINTEXT_BODY, step: int | None = None) -> ResponseError:
    parser = ResponseParser(expected)
    with pytest.raises(ResponseError) as exc:
        feed_all(parser, data, step)
    return exc.value


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 2OO OK", b"HTTP/2.0 200 OK", b"HTTP/1.1  200 OK", b"http/1.1 200 OK", b"HTTP/1.1 200 OK\x00"],
)
@pytest.mark.parametrize("step", [None, 1])
def test_malformed_status_line(status_line: bytes, step: int | None) -> None:
    error = bad(PLAIN.replace(b"HTTP/1.1 200 OK", status_line), step=step)
    # fed byte by byte, a line that does not start with "HTTP/" fails at its first wrong byte
    assert error.kind == "malformed"
    assert "status line" in error.detail or (step == 1 and "not an HTTP response" in error.detail)


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 13", "header line"),
        (b"HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 13", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Length: 14", "two different"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nTransfer-Encoding: chunked", "both"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "only chunked"),
        (b"HTTP/1.1 200 OK\r\nServer: x", "neither Content-Length nor chunked"),
    ],
)
def test_malformed_heads_and_framing(head: bytes, words: str) -> None:
    error = bad(head + b"\r\n\r\nHello, World!")
    assert error.kind == "malformed" and words in error.detail


def test_garbage_fails_before_the_head_ends() -> None:
    """A server that answers junk is caught at once, not at the reply timeout."""
    error = bad(b"SSH-2.0-OpenSSH", step=1)
    assert error.kind == "malformed" and "not an HTTP response" in error.detail


def test_status_and_body_errors_keep_the_count_before_them() -> None:
    not_found = PLAIN.replace(b"200 OK", b"404 Not Found")
    error = bad(PLAIN * 2 + not_found)
    assert (error.kind, error.detail, error.done) == ("status", "HTTP 404", 2)
    error = bad(PLAIN + PLAIN.replace(b"World", b"world"))
    assert (error.kind, error.done) == ("mismatch", 1)
    error = bad(PLAIN.replace(b"13", b"12").replace(b"World!", b"World"))
    assert error.kind == "mismatch" and "Content-Length 12" in error.detail
    # a chunked body one byte short, or one byte long, of the expected one
    assert bad(CHUNKED, expected=b"hello worl").kind == "mismatch"
    assert bad(CHUNKED, expected=b"hello world!").kind == "mismatch"
    assert bad(CHUNKED.replace(b"hello\r\n", b"hellox\r\n"), expected=b"hello world").kind == "malformed"
    assert bad(CHUNKED.replace(b"6;ext", b"zz;ext"), expected=b"hello world").kind == "malformed"


def test_a_short_body_at_close() -> None:
    parser = ResponseParser(PLAINTEXT_BODY)
    assert parser.feed(PLAIN[:-4]) == 0
    assert parser.partial and "middle of a response" in parser.eof_detail()
    parser.reset()
    assert not parser.partial and parser.eof_detail() == "EOF (closed by the server)"
    assert parser.feed(PLAIN) == 1  # a fresh connection reads from scratch


def test_the_head_cache_is_shared_and_bounded() -> None:
    cache = ParseCache()
    first, second = ResponseParser(PLAINTEXT_BODY, cache=cache), ResponseParser(PLAINTEXT_BODY, cache=cache)
    assert first.feed(PLAIN) == 1 and second.feed(PLAIN) == 1
    assert len(cache.heads) == 1 and cache.payloads == {PLAIN: 1}
    assert second.feed(PLAIN * 2) == 2 and cache.payloads[PLAIN * 2] == 2
    for second_of_day in range(300):  # a new Date every second
        dated = PLAIN.replace(b"14:57:55", f"{second_of_day:08d}".encode())
        assert first.feed(dated) == 1
    assert 0 < len(cache.heads) <= 256 and 0 < len(cache.payloads) <= 256
    # a cached head is not a free pass for a bad body
    with pytest.raises(ResponseError):
        first.feed(PLAIN.replace(b"Hello", b"Jello"))


def test_only_clean_payloads_are_remembered() -> None:
    """A payload read mid-response, or one that leaves bytes over, means something
    else the next time: it is never answered from memory."""
    cache = ParseCache()
    parser = ResponseParser(PLAINTEXT_BODY, cache=cache)
    assert parser.feed(PLAIN + PLAIN[:10]) == 1 and parser.partial
    assert parser.feed(PLAIN[10:]) == 1 and not parser.partial
    assert cache.payloads == {}
    assert parser.feed(PLAIN) == 1 and cache.payloads == {PLAIN: 1}
    # the same bytes with a response begun: read (and found wrong), not remembered
    assert parser.feed(PLAIN[:20]) == 0
    with pytest.raises(ResponseError):
        parser.feed(PLAIN)
    closing = PLAIN.replace(b"Server", b"Connection: close\r\nServer")
    fresh = ResponseParser(PLAINTEXT_BODY, cache=cache)
    assert fresh.feed(closing) == 1 and closing not in cache.payloads
    with pytest.raises(ResponseError):
        fresh.feed(PLAIN)  # after Connection: close, even remembered bytes are an error


def test_requests_and_expected_bodies() -> None:
    host = host_header("127.0.0.1", 8080)
    get = build_request("GET", "/plaintext", host)
    assert get == b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    post = build_request("POST", "/echo", host_header("::1", 80), b"abc")
    assert post == b"POST /echo HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 3\r\n\r\nabc"
    assert expected_body("GET", "/plaintext", b"") == PLAINTEXT_BODY
    assert expected_body("GET", "/json?x=1", b"") == JSON_BODY
    assert expected_body("POST", "/upper", b"ab") == b"AB"
    assert expected_body("GET", "/", b"") is None
    with pytest.raises(ValueError):
        build_request("PUT", "/", host)
    with pytest.raises(ValueError):
        build_request("GET", "/a b", host)
