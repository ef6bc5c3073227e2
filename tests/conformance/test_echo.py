"""echo: byte-exact from 0 B to 1 MiB, concurrency without cross-talk, streaming."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import recv_exactly

pytestmark = pytest.mark.timeout(120)

SIZES = [0, 1, 2, 100, 1023, 1024, 4097, 65536, 65537, 300_000, 1 << 20]


def test_echo_sizes(echo_server):
    for size in SIZES:
        data = os.urandom(size)
        assert echo_server.exchange(data) == data, f"{size} bytes"


def test_concurrent_clients_no_crosstalk(echo_server):
    def one(i: int) -> bool:
        data = f"client {i} ".encode() * (1 + i % 50) + os.urandom(i * 37 % 5000)
        return echo_server.exchange(data) == data

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(200)))
    assert all(results), f"{results.count(False)} of 200 clients got someone else's bytes"


def test_streaming_reply_before_more_input(echo_server):
    """What can be answered is sent without waiting for more input (no line
    buffering), whatever the bytes, on a connection kept open."""
    with echo_server.connect() as sock:
        for i in range(5):
            chunk = f"part {i} without newline".encode()
            sock.sendall(chunk)
            assert recv_exactly(sock, len(chunk), timeout=5) == chunk
        for i in range(1, 5):
            chunk = bytes(range(256)) * i
            sock.sendall(chunk)
            assert recv_exactly(sock, len(chunk), timeout=5) == chunk, f"all byte values x{i}"
