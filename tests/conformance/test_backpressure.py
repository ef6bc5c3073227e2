"""A client that sends 50 MiB and never reads: the server stops reading
(64 KiB high-water mark) and its memory stays bounded; nothing is lost."""

import hashlib
import os
import socket
import time

import pytest

from helpers import Flood, Server, recv_until_eof, roundtrip

pytestmark = pytest.mark.timeout(120)

BLOCK = 1 << 20
COUNT = 50
RSS_GROWTH_LIMIT = 16 << 20


def test_sender_that_never_reads(model):
    with Server(model, protocol="echo") as server:
        sock = server.connect(timeout=30)
        roundtrip(sock, b"warm-up " * 1000)  # served: `processes` has its child by now
        time.sleep(0.2)
        baseline = server.rss_bytes()
        flood = Flood(sock, os.urandom(BLOCK), COUNT).start()
        assert flood.wait_stalled(quiet=0.7, timeout=30), (
            f"the server read all {COUNT} MiB without its replies being read"
            if flood.done
            else f"sending failed: {flood.error!r}"
        )
        peak = server.rss_bytes()
        assert peak - baseline < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - baseline) >> 20} MiB"
        # Now read: everything comes back, in order, and the sender finishes.
        digest = hashlib.sha256()
        got = 0
        sock.settimeout(30)
        while got < flood.total:
            chunk = sock.recv(1 << 20)
            assert chunk, f"EOF after {got} bytes"
            digest.update(chunk)
            got += len(chunk)
            if got % (8 << 20) < len(chunk):
                peak = max(peak, server.rss_bytes())
        flood.join(10)
        assert flood.done, f"the sender could not finish: {flood.error!r}"
        assert digest.hexdigest() == flood.sha256(), "the echoed stream differs from what was sent"
        assert peak - baseline < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - baseline) >> 20} MiB"
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock, timeout=5) == (b"", "eof")
        sock.close()
        server.canary()
