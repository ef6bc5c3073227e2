#!/usr/bin/env python3
"""The io_uring model's Python cost per request, without the kernel's.

A real ``io_uring.Server`` (real ring, real recv pool, real connections over
loopback) is fed synthetic completions: batches of multishot recv CQEs of
``--msize`` bytes, one per connection, the buffers in the order the kernel
hands them out.  Each goes through the model's own dispatch
(``Server._dispatch``), the echo protocol, ``transport.write`` and the SQE
packing, then the batch's buffers are recycled, as in a loop turn.  The SQEs
so queued are never submitted (the queue is rewound after each batch): no
system call, no TCP, only the bytecode that the completion loop runs per
request, timed on one CPU (the quick sends staged in a batch are queued as
the loop does before its enter).  With ``--sends plain`` each batch also carries the
send completions of the previous batch's replies.  On a shared machine this is the noise-free
figure behind the "usr" column of bench/echo_bench.py.

    .venv/bin/python bench/uring_dispatch.py                  # quick and plain sends
    .venv/bin/python bench/uring_dispatch.py --sends quick --batches 20000
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from iomodels.core.server import ServerConfig, make_listener
from iomodels.models import io_uring
from iomodels.protocols.echo import EchoProtocol


def measure(sends: str, connections: int, batch: int, batches: int, msize: int) -> float:
    """Seconds of Python per request over ``batches`` batches."""
    config = ServerConfig(model="io_uring", protocol="echo", uring_quick_sends=sends == "quick")
    listener = make_listener("127.0.0.1", 0, connections)
    server = io_uring.Server(config, EchoProtocol, listener)
    ring = server._open_ring()
    if sends == "quick" and not server._quick_sends:
        raise SystemExit("quick sends are not supported by this kernel")
    clients = []
    try:
        for _ in range(connections):
            clients.append(socket.create_connection(listener.getsockname()))
            sock, _ = listener.accept()
            server._accepted(sock.detach())
        conns = list(server._connections.values())
        pool = server._pool
        pool.memory[:] = os.urandom(len(pool.memory))
        flags_base = io_uring.F_MORE | io_uring.F_BUFFER
        bid = 0
        plan = []
        sent: list = []  # plain sends: each completes in the next batch, as the kernel would say
        for b in range(batches):
            cqes = [(conn._ud_send, msize, 0) for conn in sent] if sends == "plain" else []
            sent = []
            for i in range(batch):
                conn = conns[(b * batch + i) % connections]
                cqes.append((conn._ud_recv, msize, flags_base | (bid << io_uring.BUFFER_SHIFT)))
                bid = (bid + 1) % pool.count
                sent.append(conn)
            plan.append(cqes)
        published = ring._sq32[ring._sq_ktail]
        dispatch, flush, queue_quick = server._dispatch, server._flush_recycled, server._queue_quick
        start = time.process_time()
        for cqes in plan:
            dispatch(cqes)
            flush()
            if server._quick:  # what the loop does before its enter
                queue_quick()
            ring._sq_tail = published  # forget the SQEs: nothing is submitted
        took = time.process_time() - start
        return took / (batches * batch)
    finally:
        ring._sq_tail = ring._sq32[ring._sq_ktail]
        for conn in list(server._connections.values()):
            conn._sock.close()
        for sock in clients:
            sock.close()
        server._pool.close()
        ring.close()
        listener.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sends", choices=["quick", "plain", "both"], default="both")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--batch", type=int, default=40, help="completions per batch (default 40)")
    ap.add_argument("--batches", type=int, default=5000)
    ap.add_argument("--msize", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is shown")
    ap.add_argument("--cpu", type=int, default=0, help="pin to this CPU; -1: no pinning (default 0)")
    args = ap.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    variants = ["quick", "plain"] if args.sends == "both" else [args.sends]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            results[v].append(measure(v, args.connections, args.batch, args.batches, args.msize))
    print(f"io_uring model, Python per request ({args.batch} recv CQEs per batch, {args.msize} B echo):")
    for v, runs in results.items():
        print(f"  {v:6s} sends: {statistics.median(runs) * 1e6:.3f} us  (runs: "
              + ", ".join(f"{r * 1e6:.3f}" for r in runs) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
