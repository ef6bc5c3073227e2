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

``--unit-costs`` prices instead the ring layer's pieces one by one (an
empty io_uring_enter through ctypes with and without argtypes, an SQE
pack, a Python frame, each way of queueing a send, each way of giving a
buffer back): the figures behind the choices fastpaths.py and abi.py
describe.

    .venv/bin/python bench/uring_dispatch.py                  # quick and plain sends
    .venv/bin/python bench/uring_dispatch.py --sends quick --batches 20000
    .venv/bin/python bench/uring_dispatch.py --unit-costs
    .venv/bin/python bench/uring_dispatch.py --sends quick --cold-mib 8 [--pool-cycle 16]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from iomodels import uring
from iomodels.core.server import ServerConfig, make_listener
from iomodels.models import io_uring
from iomodels.protocols.echo import EchoProtocol
from iomodels.uring import abi, fastpaths


def measure(
    sends: str, connections: int, batch: int, batches: int, msize: int, cold_mib: int = 0, pool_cycle: int = 0
) -> float:
    """Seconds of Python per request over ``batches`` batches.

    ``cold_mib``: before each batch, untimed, write one byte per cache line
    of a ``cold_mib`` MiB buffer, so that each batch starts with cold caches
    (as when other work, the kernel's or a neighbour's, ran in between).
    ``pool_cycle``: cycle through only the first N buffers of the recv pool
    (default: all of them, as the kernel does), to price the pool's share.
    """
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
                bid = (bid + 1) % (pool_cycle or pool.count)
                sent.append(conn)
            plan.append(cqes)
        published = ring._sq32[ring._sq_ktail]
        dispatch, flush, queue_quick = server._dispatch, server._flush_recycled, server._queue_quick
        sweep = bytearray(cold_mib << 20)
        ones = b"\1" * (len(sweep) // 64)
        took = 0.0
        start = time.process_time()
        for cqes in plan:
            if cold_mib:
                took += time.process_time() - start
                sweep[::64] = ones
                start = time.process_time()
            dispatch(cqes)
            flush()
            if server._quick:  # what the loop does before its enter
                queue_quick()
            ring._sq_tail = published  # forget the SQEs: nothing is submitted
        took += time.process_time() - start
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


def _per_call(fn, calls: int, rounds: int, after_round=None) -> float:
    """Best seconds per call of ``fn()`` over ``rounds`` rounds of ``calls``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
        if after_round:
            after_round()
    return best


def unit_costs(rounds: int) -> dict[str, float]:
    """Seconds per call of the ring layer's pieces, best of ``rounds``."""
    batch = 40  # sends or buffers per loop turn, as in measure()
    calls = 1000
    out: dict[str, float] = {}
    ring = uring.Ring(2048)
    pool = uring.BufferRing(ring, 1, 64, 64)
    a, b = socket.socketpair()
    try:
        fd = ring.fd

        def rewind() -> None:  # forget the queued SQEs: nothing is submitted
            ring._sq_tail = ring._sq32[ring._sq_ktail]
            ring._keep.clear()

        # Every figure includes this harness's own call of a lambda: one
        # Python frame, the unit the fast paths save.
        out["one Python frame (an empty lambda; in every figure below)"] = _per_call(
            lambda: None, calls, rounds
        )
        syscall = uring._syscall
        nr, argsz = abi.NR_ENTER, abi.ARGSZ_0
        out["io_uring_enter, empty, ctypes without argtypes"] = _per_call(
            lambda: syscall(nr, fd, 0, 0, 0, None, argsz), calls, rounds
        )
        typed = ctypes.CDLL(None, use_errno=True).syscall
        typed.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                          ctypes.c_void_p, ctypes.c_size_t]  # fmt: skip
        out["io_uring_enter, empty, ctypes with argtypes"] = _per_call(
            lambda: typed(abi.SYS_IO_URING_ENTER, fd, 0, 0, 0, None, 0), calls, rounds
        )
        sqe, pack, fields = bytearray(64), abi.SQE.pack_into, (26, 0, 0, 5, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0)
        out["SQE pack_into (14 fields)"] = _per_call(lambda: pack(sqe, 0, *fields), calls, rounds)
        data = b"x" * 1024
        out["address of a bytes: ctypes.cast"] = _per_call(
            lambda: ctypes.cast(data, ctypes.c_void_p).value, calls, rounds
        )
        out["address of a bytes: id() + offset"] = _per_call(lambda: id(data) + abi.BYTES_OFF, calls, rounds)
        ud = iter(range(1 << 62))
        out["prep_send (the ring keeps the buffer)"] = _per_call(
            lambda: ring.prep_send(a.fileno(), data, next(ud)), calls, rounds, rewind
        )
        unmanaged = ring.unmanaged_send_preparer()
        out["unmanaged_send_preparer()'s prep_send"] = _per_call(
            lambda: unmanaged(a.fileno(), data, 7, 0), calls, rounds, rewind
        )
        if ring.supports_quick_send:
            sends = [(fastpaths.quick_sqe(a.fileno(), 7), data)] * batch
            out[f"prep_quick_sends, per send (batches of {batch})"] = (
                _per_call(lambda: ring.prep_quick_sends(sends), calls // batch, rounds, rewind) / batch
            )
        bids = list(range(batch))
        out["BufferRing.recycle, per buffer"] = (
            _per_call(lambda: [pool.recycle(bid) for bid in bids], calls // batch, rounds) / batch
        )
        note, flush = pool.batch_recycler()

        def note_and_flush() -> None:
            for bid in bids:
                note(bid)
            flush()

        out[f"batch_recycler note + flush, per buffer (batches of {batch})"] = (
            _per_call(note_and_flush, calls // batch, rounds) / batch
        )
    finally:
        a.close()
        b.close()
        pool.close()
        ring.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sends", choices=["quick", "plain", "both"], default="both")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--batch", type=int, default=40, help="completions per batch (default 40)")
    ap.add_argument("--batches", type=int, default=5000)
    ap.add_argument("--msize", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is shown")
    ap.add_argument("--cpu", type=int, default=0, help="pin to this CPU; -1: no pinning (default 0)")
    ap.add_argument("--cold-mib", type=int, default=0, help="untimed cache sweep of N MiB before each batch")
    ap.add_argument("--pool-cycle", type=int, default=0, help="cycle through only N pool buffers (0: all)")
    ap.add_argument("--unit-costs", action="store_true", help="price the ring layer's pieces instead")
    args = ap.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    if args.unit_costs:
        print("io_uring ring layer, ns per call (best of 50 rounds):")
        for what, cost in unit_costs(50).items():
            print(f"  {cost * 1e9:7.0f}  {what}")
        return 0
    variants = ["quick", "plain"] if args.sends == "both" else [args.sends]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            results[v].append(
                measure(
                    v, args.connections, args.batch, args.batches, args.msize, args.cold_mib, args.pool_cycle
                )
            )
    cold = f", {args.cold_mib} MiB swept before each" if args.cold_mib else ""
    cycle = f", {args.pool_cycle} pool buffers cycled" if args.pool_cycle else ""
    setup = f"{args.batch} recv CQEs per batch{cold}{cycle}, {args.msize} B echo"
    print(f"io_uring model, Python per request ({setup}):")
    for v, runs in results.items():
        print(
            f"  {v:6s} sends: {statistics.median(runs) * 1e6:.3f} us  (runs: "
            + ", ".join(f"{r * 1e6:.3f}" for r in runs)
            + ")"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
