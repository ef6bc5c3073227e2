"""A client that sends 50 MiB and never reads: the server stops reading
(64 KiB high-water mark) and its memory stays bounded; nothing is lost."""

import hashlib
import os
import threading
import time

import pytest

from helpers import Server, recv_exactly

pytestmark = pytest.mark.timeout(120)

TOTAL = 50 << 20
RSS_GROWTH_LIMIT = 16 << 20


def test_sender_that_never_reads(model):
    block = os.urandom(1 << 20)
    with Server(model, protocol="echo") as server:
        sock = server.connect(timeout=30)
        sock.sendall(b"hi")
        assert recv_exactly(sock, 2) == b"hi"
        time.sleep(0.2)
        baseline = server.rss_bytes()
        sent = [0]

        def send_all() -> None:
            for _ in range(TOTAL // len(block)):
                sock.sendall(block)
                sent[0] += len(block)

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        # Wait until the sender stalls: the kernel buffers are full both ways.
        last, stalled_since = -1, time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if sent[0] != last:
                last, stalled_since = sent[0], time.monotonic()
            elif time.monotonic() - stalled_since > 0.7:
                break
        peak = server.rss_bytes()
        assert sent[0] < TOTAL, "the server read all 50 MiB without its replies being read"
        assert peak - baseline < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - baseline) >> 20} MiB"
        # Now read: everything comes back, in order.
        digest = hashlib.sha256()
        expected = hashlib.sha256(block * (TOTAL // len(block))).hexdigest()
        got = 0
        sock.settimeout(30)
        while got < TOTAL:
            chunk = sock.recv(1 << 20)
            assert chunk, f"EOF after {got} bytes"
            digest.update(chunk)
            got += len(chunk)
            if got % (8 << 20) < len(chunk):
                peak = max(peak, server.rss_bytes())
        sender.join(10)
        sock.close()
        assert digest.hexdigest() == expected
        assert peak - baseline < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - baseline) >> 20} MiB"
        server.canary()
