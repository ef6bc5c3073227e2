#!/usr/bin/env python3
"""The http protocol's Python cost per WSGI request, without sockets.

One ``HttpProtocol`` per connection, over a transport that only counts its
writes, is fed wrk's request (``GET /plaintext HTTP/1.1`` with a Host
field), one ``data_received`` per request, round-robin over ``--connections``
connections, as a keep-alive load without pipelining does.  What is timed is
what the server's loop runs per request above the transport: httptools, the
request cycle, and for the WSGI variants the environ, start_response, the
app, the head and the framing.  On a shared machine this is the noise-free
figure behind the "server CPU per request" of ``iomodels compare --app``.

Variants (interleaved, the median of ``--repeats`` rounds shown):
    route     the built-in /plaintext route (no WSGI): the floor
    inline    ``--app-inline``: the app on the loop thread
    worker    the worker mode's Python, with the hop taken out: the fake
              transport's run_in_worker calls the app at once and its done
              callback right after, on this thread (what the two threads
              run, minus the executor, the GIL hand-over and the wake-up)
    thread    the blocking models' mode (the app in data_received)

    .venv/bin/python bench/wsgi_dispatch.py
    .venv/bin/python bench/wsgi_dispatch.py --variants inline --requests 200000 --repeats 7
    .venv/bin/python bench/wsgi_dispatch.py --profile inline     # cProfile, by own time
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from iomodels.protocols.http.protocol import HttpProtocol, HttpSettings
from iomodels.protocols.http.wsgi import WsgiApp
from iomodels.webbench.apps import wsgi_hello

REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


class CountingTransport:
    """What the protocol needs of a transport, doing nothing but count."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data

    def close(self) -> None:
        raise AssertionError("the protocol closed a keep-alive connection")

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_idle_timeout(self, seconds: float | None) -> None:
        pass

    def get_extra_info(self, name: str, default=None):
        if name == "peername":
            return ("127.0.0.1", 40000)
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return default

    def run_in_worker(self, func, *args, done=None) -> None:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(func(*args))
        if done is not None:
            done(future)

    def call_soon_threadsafe(self, callback, arg=None) -> None:
        callback(arg)


def connections(variant: str, count: int) -> list[HttpProtocol]:
    wsgi = None if variant == "route" else WsgiApp(wsgi_hello, variant)
    settings = HttpSettings(wsgi=wsgi)
    protocols = []
    for _ in range(count):
        protocol = HttpProtocol(settings)
        protocol.connection_made(CountingTransport())
        protocols.append(protocol)
    return protocols


def measure(variant: str, count: int, requests: int) -> float:
    """Seconds of CPU per request."""
    protocols = connections(variant, count)
    feeds = [protocol.data_received for protocol in protocols] * (requests // count)
    for feed in feeds[:count]:  # warm: per-connection environs, the head cache
        feed(REQUEST)
    start = time.process_time()
    for feed in feeds:
        feed(REQUEST)
    took = time.process_time() - start
    last = protocols[0].transport.last
    if not (last.startswith(b"HTTP/1.1 200 OK\r\n") and last.endswith(b"\r\n\r\nHello, World!")):
        raise SystemExit(f"{variant}: unexpected response {last!r}")
    return took / len(feeds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="route,inline,worker,thread")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--requests", type=int, default=100_000, help="per round and variant")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is shown")
    ap.add_argument("--cpu", type=int, default=0, help="pin to this CPU; -1: no pinning (default 0)")
    ap.add_argument("--profile", metavar="VARIANT", help="cProfile one variant instead (own time)")
    args = ap.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(measure, args.profile, args.connections, args.requests)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return 0
    variants = args.variants.split(",")
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            results[v].append(measure(v, args.connections, args.requests))
    print(f"http protocol, Python per request ({args.connections} connections, no sockets):")
    for v, runs in results.items():
        print(
            f"  {v:7s} {statistics.median(runs) * 1e6:6.3f} us  (runs: "
            + ", ".join(f"{r * 1e6:.3f}" for r in runs)
            + ")"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
