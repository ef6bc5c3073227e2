"""Echo over asyncio on three loops: server CPU per request.

    python bench/aio_echo_ab.py [--seconds 5] [--conns 100] [--size 1024]
    python bench/aio_echo_ab.py --micro     # call_soon and timer costs
    python bench/aio_echo_ab.py --loops uring --styles protocol --profile 25
                                               # where the server's time goes (cProfile)
    python bench/aio_echo_ab.py --baseline DIR  # adds "uring-base": iomodels from DIR/src
    python bench/aio_echo_ab.py --hot-path [--baseline DIR]
                                               # the echo hot path's Python alone, ns/request

For each loop (``uring`` = iomodels.aio, ``asyncio`` = the default
selector loop, ``uvloop`` if installed) and each server style (``protocol``:
an ``asyncio.Protocol`` that writes back what it gets; ``streams``:
``start_server`` with ``read`` / ``write`` / ``drain``), a server process
pinned to CPU 0 serves ``--conns`` connections of a client pinned to CPU 1
(one uvloop process, or the default loop without uvloop), each connection
sending ``--size`` bytes and waiting for them to come back, in a closed
loop.  The figure is the server's user+system CPU time over the measured
window divided by the requests completed in it (after a one-second warm-up),
read from /proc/<pid>/stat.  On a shared machine, compare loops within one
run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

LOOPS = ("uring", "asyncio", "uvloop")
STYLES = ("protocol", "streams")


def _new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name in ("uring", "uring-base"):  # uring-base: the same, imported from --baseline
        from iomodels import aio

        return aio.new_event_loop()
    if name == "uring-noquick":  # writes sent at once, not as quick sends in the enter
        from iomodels import aio

        return aio.UringEventLoop(aio.UringProactor(quick_sends=False))
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.SelectorEventLoop()


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def _stream_echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client ends the run by closing with bytes in flight: a reset
    writer.close()


def serve(loop_name: str, style: str) -> None:
    """Child: serve until stdin closes; print the port first."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    loop = _new_loop(loop_name)

    async def main():
        if style == "protocol":
            server = await loop.create_server(_Echo, "127.0.0.1", 0, backlog=1024)
        else:
            server = await asyncio.start_server(_stream_echo, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        done = loop.create_future()
        loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
        await done
        server.close()

    profile = os.environ.get("ECHO_BENCH_PROFILE")
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(loop.run_until_complete, main())
        stats = pstats.Stats(prof, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(int(profile))
    else:
        loop.run_until_complete(main())
    loop.close()


class _Client(asyncio.Protocol):
    def __init__(self, payload: bytes, counter: list) -> None:
        self.payload = payload
        self.size = len(payload)
        self.got = 0
        self.counter = counter

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data):
        self.got += len(data)
        if self.got >= self.size:
            self.got -= self.size
            self.counter[0] += 1
            self.transport.write(self.payload)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def measure(
    loop_name: str, style: str, conns: int, size: int, seconds: float, env: dict | None = None
) -> tuple[float, float, float]:
    """(server CPU µs per request, requests per second, of which system µs)."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", loop_name, style],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = int(child.stdout.readline())
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.SelectorEventLoop()
        counter = [0]

        async def run():
            payload = b"x" * size
            transports = []
            for _ in range(conns):
                t, _p = await loop.create_connection(lambda: _Client(payload, counter), "127.0.0.1", port)
                transports.append(t)
            await asyncio.sleep(1.0)  # warm-up
            n0, c0, t0 = counter[0], _cpu_seconds(child.pid), time.monotonic()
            await asyncio.sleep(seconds)
            n1, c1, t1 = counter[0], _cpu_seconds(child.pid), time.monotonic()
            for t in transports:
                t.close()
            n = max(n1 - n0, 1)
            user, system = c1[0] - c0[0], c1[1] - c0[1]
            return (user + system) / n * 1e6, (n1 - n0) / (t1 - t0), system / n * 1e6

        return loop.run_until_complete(run())
    finally:
        child.stdin.close()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def micro(loop_name: str, n: int = 100_000) -> tuple[float, float]:
    """(µs per call_soon callback, µs per call_later(0) timer), each a
    callback that schedules the next, as uvloop's own benchmarks do."""
    loop = _new_loop(loop_name)
    try:
        results = []
        for schedule in (loop.call_soon, lambda cb: loop.call_later(0, cb)):
            left = [n]
            done = loop.create_future()

            def cb(schedule=schedule, left=left, done=done):
                left[0] -= 1
                if left[0]:
                    schedule(cb)
                else:
                    done.set_result(None)

            t0 = time.perf_counter()
            schedule(cb)
            loop.run_until_complete(done)
            results.append((time.perf_counter() - t0) / n * 1e6)
        return results[0], results[1]
    finally:
        loop.close()


def hot_path(batch: int = 64, turns: int = 300, runs: int = 15) -> float:
    """ns of Python per echo request on iomodels.aio without the kernel:
    ``UringProactor.select`` dispatches a batch of made-up multishot recv
    completions (1 KiB each) to echo protocols, which write back (quick
    sends staged, then written into the SQ); the enter and the reap are
    stubs and nothing queued reaches the kernel.  The best of ``runs``
    runs of ``turns`` turns: the figure to compare two source trees by
    (the end-to-end CPU per request moves by ~5 % between runs, more than
    a change of a few bytecodes does)."""
    import socket
    import threading

    from iomodels import aio, uring

    loop = aio.new_event_loop()
    proactor = loop._proactor
    ring = proactor._ring
    pairs = [socket.socketpair() for _ in range(batch)]  # left open: the process ends after this
    transports = [loop._make_socket_transport(a, _Echo()) for a, _b in pairs]
    loop.run_until_complete(asyncio.sleep(0))  # connection_made, then the recvs armed
    loop.run_until_complete(asyncio.sleep(0))
    uds = [t._recv_ud for t in transports]
    if not all(uds) or proactor._quick is False:
        raise RuntimeError("no multishot recv or no quick sends here")
    flags = uring.IORING_CQE_F_MORE | uring.IORING_CQE_F_BUFFER
    tail = ring._sq_tail

    def enter(*_args, **_kw):
        ring._sq_tail = tail  # drop what was queued: the SQ tail was never published
        return 0

    ring.submit_and_wait = enter
    ring.needs_enter = lambda: True
    ring.reap = lambda: [
        (ud, 1024, (bid << uring.IORING_CQE_BUFFER_SHIFT) | flags) for bid, ud in enumerate(uds)
    ]
    loop._thread_id = threading.get_ident()  # "running": writes are staged as quick sends
    select = proactor.select
    for _ in range(turns):
        select(0)
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(turns):
            select(0)
        best = min(best, (time.perf_counter() - t0) / (turns * batch) * 1e9)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", nargs=2, metavar=("LOOP", "STYLE"), help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--styles", default=",".join(STYLES))
    ap.add_argument("--micro", action="store_true", help="call_soon and timer costs instead")
    ap.add_argument("--profile", type=int, metavar="N", help="run the server under cProfile; print its top N")
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        help="also measure 'uring-base': iomodels imported from DIR/src (a `git archive` of an older commit)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="measure every cell this many times, interleaved")
    ap.add_argument("--hot-path", action="store_true", help="the echo hot path's Python alone (see hot_path)")
    ap.add_argument("--hot-path-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(*args.serve)
        return 0
    if args.hot_path_child:
        print(f"{hot_path():.0f}", flush=True)
        os._exit(0)  # the loop and its sockets go with the process
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1 % os.cpu_count()})  # the hot-path children too
    if args.hot_path:
        return hot_path_ab(args)
    if args.micro:
        print(f"{'loop':8} {'call_soon us':>13} {'timer us':>9}")
        for loop_name in args.loops.split(","):
            try:
                soon, timer = micro(loop_name)
            except ImportError as exc:
                print(f"{loop_name:8} unavailable: {exc}")
                continue
            print(f"{loop_name:8} {soon:13.2f} {timer:9.2f}", flush=True)
        return 0
    loops = args.loops.split(",")
    if args.baseline and "uring-base" not in loops:
        loops.insert(0, "uring-base")
    envs = {}
    for loop_name in loops:
        env = dict(os.environ)
        if loop_name == "uring-base":
            if not args.baseline:
                ap.error("uring-base needs --baseline DIR")
            env["PYTHONPATH"] = os.path.join(os.path.abspath(args.baseline), "src")
        if args.profile:
            env["ECHO_BENCH_PROFILE"] = str(args.profile)
        envs[loop_name] = env
    print(f"{'style':9} {'loop':10} {'server CPU us/req':>18} {'(system)':>9} {'req/s':>9}")
    for style in args.styles.split(","):
        for _ in range(args.repeat):
            for loop_name in loops:
                try:
                    us, rps, sys_us = measure(
                        loop_name, style, args.conns, args.size, args.seconds, envs[loop_name]
                    )
                except (ImportError, ValueError) as exc:
                    print(f"{style:9} {loop_name:10} unavailable: {exc}")
                    continue
                print(f"{style:9} {loop_name:10} {us:18.1f} {sys_us:9.1f} {rps:9.0f}", flush=True)
    return 0


def hot_path_ab(args) -> int:
    """``--hot-path``: this tree (and ``--baseline``'s), one fresh process
    each, alternating ``--repeat`` times (at least 5); the best of each."""
    trees = {"uring": None}
    if args.baseline:
        trees["uring-base"] = os.path.join(os.path.abspath(args.baseline), "src")
    seen: dict[str, list[int]] = {name: [] for name in trees}
    for _ in range(max(args.repeat, 5)):
        for name, src in trees.items():
            env = dict(os.environ)
            if src:
                env["PYTHONPATH"] = src
            out = subprocess.run(
                [sys.executable, __file__, "--hot-path-child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            seen[name].append(int(out.stdout.split()[-1]))
    print(f"{'tree':10} {'ns/request (best)':>18}  all runs")
    for name, values in seen.items():
        print(f"{name:10} {min(values):18d}  {' '.join(map(str, values))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
