"""wsgi.file_wrapper through the kernel against the block iteration: server CPU per MiB.

    .venv/bin/python bench/sendfile_bench.py [--size-mib 64] [--requests 4] [--rounds 3]

A WSGI app (this module, ``sendfile_bench:app``) returns
``environ['wsgi.file_wrapper']`` over a SIZE MiB file, two ways:

    /sendfile   over the file itself: the server hands it to
                transport.sendfile (os.sendfile; splices on io_uring)
    /blocks     over an object with read() and close() but no fileno():
                the server iterates it, 64 KiB blocks through the process,
                as every event-loop model did before

Each server (--protocol http --app sendfile_bench:app, the default worker
mode) runs in a session of its own pinned to CPU 0 (iomodels.harness
ServerProcess); the client, this process, on CPU 1 reads each response whole
into one reused buffer.  Per cell: one warm-up request, then REQUESTS
requests on one keep-alive connection; the server's exact CPU (its session's
utime + stime, io-wq kernel workers included) over the bytes.  Rounds
alternate the order of the two paths; the table gives the median and the
spread (min-max) of the rounds, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

FILE_ENV = "SENDFILE_BENCH_FILE"


class _NoFileno:
    """A file seen only through read() and close(): the server iterates it."""

    def __init__(self, file) -> None:
        self.read = file.read
        self.close = file.close


def app(environ, start_response):
    """The benchmark's app (imported by the server, not run here)."""
    path = os.environ[FILE_ENV]
    file = open(path, "rb")  # noqa: SIM115 - the wrapper's close() closes it
    # A Content-Length on both: the same framing, no chunks on the iterated one.
    length = str(os.path.getsize(path))
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", length)])
    wrapper = environ["wsgi.file_wrapper"]
    if environ["PATH_INFO"] == "/blocks":
        return wrapper(_NoFileno(file), 65536)
    return wrapper(file)


def fetch(sock: socket.socket, path: bytes, size: int, buffer: memoryview) -> None:
    """One GET, the whole response read (head parsed for its length only)."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("EOF in the head")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0] or b"Content-Length: %d" % size not in head:
        raise AssertionError(f"unexpected head: {head[:300]!r}")
    left = size - len(rest)
    while left:
        n = sock.recv_into(buffer, min(left, len(buffer)))
        if not n:
            raise ConnectionError(f"EOF with {left} bytes to go")
        left -= n


def measure(model: str, path: bytes, size: int, requests: int, file: str) -> float:
    """Server CPU ms per MiB of ``model`` serving ``path``."""
    from iomodels.harness.process import ServerProcess

    bench_dir = str(Path(__file__).resolve().parent)
    env = {FILE_ENV: file, "PYTHONPATH": bench_dir}
    args = ["--app", "sendfile_bench:app"]
    buffer = memoryview(bytearray(4 * 1024 * 1024))
    with (
        ServerProcess(model, "http", args, cpu=0, env=env) as server,
        socket.create_connection(server.address, timeout=60) as sock,
    ):
        fetch(sock, path, size, buffer)  # warm-up: imports, page cache, pools
        cpu0 = server.cpu_seconds()
        for _ in range(requests):
            fetch(sock, path, size, buffer)
        cpu = server.cpu_seconds() - cpu0
    return cpu * 1000 / (requests * size / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="epoll,io_uring,threads")
    opts = parser.parse_args()
    size = opts.size_mib * 2**20
    os.sched_setaffinity(0, {1})  # the client; servers are pinned to CPU 0
    with tempfile.NamedTemporaryFile(prefix="sendfile-bench-") as tmp:
        block = os.urandom(2**20)
        for _ in range(opts.size_mib):
            tmp.write(block)
        tmp.flush()
        results: dict[tuple[str, bytes], list[float]] = {}
        started = time.monotonic()
        for rnd in range(opts.rounds):
            for model in opts.models.split(","):
                paths = (b"/sendfile", b"/blocks") if rnd % 2 == 0 else (b"/blocks", b"/sendfile")
                for path in paths:
                    value = measure(model, path, size, opts.requests, tmp.name)
                    results.setdefault((model, path), []).append(value)
                    line = f"round {rnd + 1} {model:9s} {path.decode():10s} {value:7.3f} ms/MiB"
                    print(line, file=sys.stderr)
    print(f"\n{opts.size_mib} MiB file x {opts.requests} requests, {opts.rounds} rounds "
          f"({time.monotonic() - started:.0f} s); server CPU ms per MiB, median (min-max)")  # fmt: skip
    print(f"{'model':10s} {'sendfile':>22s} {'blocks':>22s} {'blocks/sendfile':>16s}")
    for model in opts.models.split(","):
        cells = []
        for path in (b"/sendfile", b"/blocks"):
            values = results[(model, path)]
            cells.append((statistics.median(values), min(values), max(values)))
        ratio = cells[1][0] / cells[0][0] if cells[0][0] else float("inf")
        text = [f"{m:7.3f} ({lo:.3f}-{hi:.3f})" for m, lo, hi in cells]
        print(f"{model:10s} {text[0]:>22s} {text[1]:>22s} {ratio:15.1f}x")


if __name__ == "__main__":
    main()
