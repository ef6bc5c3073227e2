#!/usr/bin/env python3
"""iomodels.aio beside uvloop and asyncio's default loop: echo, aiohttp, uvicorn, call_soon.

Issue 11 asks for the loop on io_uring (``uring`` = iomodels.aio) measured side
by side with ``uvloop`` and asyncio's default loop (``asyncio``: the selector
loop) on what asyncio programs do, in one run: every round runs every workload
on every loop, the loops' order rotated each round, so that drift on a shared
machine hits every loop alike; the tables give medians over the rounds and
their spread.  Workloads (``--only``):

  protocol  echo server, an asyncio.Protocol that writes back what it gets
  streams   echo server, asyncio.start_server with read / write / drain
            (both: ``--connections`` closed-loop connections of ``--msize``
            bytes from iomodels.loadgen, every echo checked, as the standard
            cell of bench/echo_bench.py)
  aiohttp   an aiohttp.web app answering GET /plaintext with "Hello, World!",
            started by web.run_app after the loop's policy is installed (for
            uvloop: uvloop.EventLoopPolicy; here: iomodels.aio.install())
  uvicorn   the peers' ASGI hello world (webbench.apps:asgi_hello) under the
            uvicorn command line that `iomodels compare` runs as its uvicorn
            peer (--http httptools), with --loop uvloop, --loop asyncio or
            --loop iomodels.aio:new_event_loop (a loop factory, uvicorn's own
            way to take a custom loop)
            (both: wrk, keep-alive, ``--connections`` connections, one thread)
  micro     the loop alone, in a process of its own pinned as the servers are:
            µs of CPU per callback and per timer, each timed four ways:
              soon      call_soon chain: each callback schedules the next, so
                        every callback is one turn of the loop (uvloop's
                        benchmarks' shape: the cost of a turn)
              soon*1k   call_soon burst: 1000 callbacks scheduled at once, run
                        in one turn (the cost of a callback, turns amortised)
              timer     call_later(1 ms) chain: one timer per turn, each turn
                        a wait in the kernel until it is due (--micro-n / 100
                        of them: they take 1 ms of wall time each)
              timer*1k  1000 call_later(1 ms) timers at once (the timer heap)
            1 ms, not 0: uvloop turns call_later(0) (anything under 0.5 ms,
            its timers count whole ms) into call_soon, so 0 would time no timer.

Every server (and the micro process) is pinned to ``--server-cpu`` from its
fork on and the load (loadgen or wrk, and this script) to ``--client-cpu``.
Server CPU is exact: the scheduler's runtime of every thread of the server's
session (harness.session_cpu_s), read around the measured window only; a
warm-up of ``--warmup`` s under the same load comes first, unmeasured.

Columns: req/s; us/req = server CPU µs per request (the figure to compare: it
does not count time the server waited for a CPU), median and min-max over the
rounds; sys% = the share of it in the kernel (tick samples, applied to the exact
figure); p50 / p99 latency in µs; err = failed requests; xuvloop = the loop's
median us/req / uvloop's, and in brackets the range of the per-round ratios
(each round's pair measured minutes apart at most).

Profiles (``--profile TOOL``, bench/profilers.py: pyspy, pyspynative, strace,
perfsys, perfstat, perfrecord): after the warm-up the tool attaches to the
server, which idles ``--attach-delay`` s, then the window is measured with it
attached (its figures are perturbed, and flagged so) and the tool's summary is
printed under the cell; its output stays in ``--profile-dir``.

Examples:
  .venv/bin/python bench/aio_bench.py                          # everything, 3 rounds of 5 s
  .venv/bin/python bench/aio_bench.py --quick                  # 1 round of 1 s: does it all run?
  .venv/bin/python bench/aio_bench.py --only uvicorn,micro --rounds 5 --json /tmp/aio.json
  .venv/bin/python bench/aio_bench.py --loops uring,uvloop --only protocol,streams
  .venv/bin/python bench/aio_bench.py --only uvicorn --loops uring,uvloop --rounds 1 --profile pyspy
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # measure this tree, installed or not
from iomodels.harness import ArgParser, ServerProcess, ServerStartError, machine, session_group  # noqa: E402
from iomodels.harness.machine import summary  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profilers  # noqa: E402 (bench/profilers.py, as echo_bench.py uses it)

HOST = "127.0.0.1"  # loopback only, on purpose
WIDTH = 120  # columns of everything printed
LOOPS = ("uring", "asyncio", "uvloop")
WORKLOADS = ("protocol", "streams", "aiohttp", "uvicorn", "micro")
ECHO = ("protocol", "streams")
HTTP = ("aiohttp", "uvicorn")
PATH = "/plaintext"  # what wrk asks for: the peers' path
DRAIN_S = 2.0  # loadgen: after a phase, every request in flight answered
TIMEOUT_S = 5.0  # a reply later than this is an error, not a slow request
MICRO_KINDS = ("soon", "soon*1k", "timer", "timer*1k")
BURST = 1000  # callbacks or timers scheduled at once in the *1k kinds
TIMER_S = 0.001  # uvloop's timer resolution; below 0.5 ms its call_later is a call_soon
UVICORN_LOOP = {"uvloop": "uvloop", "asyncio": "asyncio", "uring": "iomodels.aio:new_event_loop"}
TARGETS = {"uvicorn": 0.9, "protocol": 1.0, "streams": 1.0}  # issue 11: uring / uvloop at most this


# --------------------------------------------------------------------------
# the loops, as a program picks one


def loop_unavailable(name: str) -> str | None:
    """Why the loop ``name`` cannot run here, or None."""
    if name == "uring":
        from iomodels import aio

        ok, why = aio.available()
        return None if ok else why
    if name == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError as exc:
            return f"uvloop is not installed ({exc}): pip install -e '.[uvloop]'"
    return None


def workload_unavailable(name: str) -> str | None:
    """Why the workload ``name`` cannot run here (a library or wrk missing), or None."""
    import importlib.util

    from iomodels.webbench import wrk

    if name in HTTP:
        if importlib.util.find_spec(name) is None:
            extra = "aio-programs" if name == "aiohttp" else "peers"
            return f"{name} is not installed: pip install -e '.[{extra}]'"
        if name == "uvicorn" and importlib.util.find_spec("httptools") is None:
            return "httptools is not installed: pip install -e '.[http]'"
        if wrk.wrk_path() is None:
            return wrk.INSTALL_HINT
    return None


def install_loop(name: str) -> None:
    """Make asyncio.run() and asyncio.new_event_loop() use loop ``name``, the
    way a program does it (a policy), so that aiohttp's run_app picks it up."""
    if name == "uring":
        from iomodels import aio

        aio.install()
    elif name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif name != "asyncio":
        raise ValueError(f"unknown loop {name!r}")


# --------------------------------------------------------------------------
# the child processes: servers and the micro timing


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def _stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client went away mid-echo: nothing to answer
    finally:
        writer.close()


def _ready(listener: Any, loop_name: str, workload: str) -> None:
    from iomodels.core.server import ready_line

    print(ready_line(listener, loop_name, workload), flush=True)


def serve_echo(loop_name: str, workload: str) -> None:
    """Serve echo until SIGTERM (its default action: the harness stops us so)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if workload == "protocol":
            server = await loop.create_server(_Echo, HOST, 0, backlog=2048)
        else:
            server = await asyncio.start_server(_stream_echo, HOST, 0, backlog=2048)
        _ready(server.sockets[0], loop_name, workload)
        await server.serve_forever()

    install_loop(loop_name)
    asyncio.run(main())


def serve_aiohttp(loop_name: str) -> None:
    """aiohttp.web's hello world under web.run_app, as its docs start one."""
    import socket

    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get(PATH, hello)
    app.router.add_get("/", hello)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    install_loop(loop_name)
    # run_app calls print() once its sites listen: that is our ready line
    web.run_app(app, sock=sock, backlog=2048, access_log=None, shutdown_timeout=1.0,
                print=lambda *_: _ready(sock, loop_name, "aiohttp"))  # fmt: skip


def micro(loop_name: str, n: int) -> dict[str, float]:
    """µs of this process's CPU per callback or timer, for each of MICRO_KINDS.

    Each kind runs ``n`` callbacks once unmeasured (warm-up: caches, the
    allocator's free lists) and then ``n`` measured.  CPU time, not wall
    time: a turn that waits for a timer to be due does not count."""
    install_loop(loop_name)
    loop = asyncio.new_event_loop()
    out = {}
    try:
        for kind in MICRO_KINDS:
            count = max(n // 100, 100) if kind == "timer" else n  # 1 ms of wall time each
            _micro_once(loop, kind, max(count // 10, 1))
            t0 = time.process_time()
            _micro_once(loop, kind, count)
            out[kind] = (time.process_time() - t0) / count * 1e6
    finally:
        loop.close()
    return out


def _micro_once(loop: asyncio.AbstractEventLoop, kind: str, n: int) -> None:
    done = loop.create_future()
    left = n

    def noop() -> None:
        pass

    if kind == "soon":

        def step() -> None:
            nonlocal left
            left -= 1
            if left:
                loop.call_soon(step)
            else:
                done.set_result(None)

        loop.call_soon(step)
    elif kind == "timer":

        def step() -> None:
            nonlocal left
            left -= 1
            if left:
                loop.call_later(TIMER_S, step)
            else:
                done.set_result(None)

        loop.call_later(TIMER_S, step)
    else:
        schedule = loop.call_soon if kind == "soon*1k" else lambda cb: loop.call_later(TIMER_S, cb)

        def step() -> None:
            nonlocal left
            if left <= 0:
                done.set_result(None)
                return
            for _ in range(min(BURST, left)):
                schedule(noop)
            left -= BURST
            # after the burst: FIFO for call_soon; for timers a deadline no earlier than
            # the burst's, so the burst has run, all of it, when step finds left <= 0
            schedule(step)

        loop.call_soon(step)
    loop.run_until_complete(done)


def child_main(args: argparse.Namespace) -> int:
    workload, loop_name = args.serve
    if workload in ECHO:
        serve_echo(loop_name, workload)
    elif workload == "aiohttp":
        serve_aiohttp(loop_name)
    elif workload == "micro":
        print(json.dumps(micro(loop_name, args.micro_n)), flush=True)
    else:
        raise SystemExit(f"unknown workload {workload!r}")
    return 0


# --------------------------------------------------------------------------
# one cell: one workload on one loop, one server, one warm-up, one window


def child_command(workload: str, loop_name: str, *extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--serve", workload, loop_name, *extra]


def start_server(args: argparse.Namespace, workload: str, loop_name: str, scratch: Path) -> ServerProcess:
    if workload == "uvicorn":
        from iomodels.webbench import peers, runner

        base = peers.get("uvicorn")  # the peer compare runs: --loop uvloop --http httptools
        argv = base.argv

        def on_loop(host: str, port: int, where: Path) -> list[str]:
            cmd = argv(host, port, where)
            cmd[cmd.index("--loop") + 1] = UVICORN_LOOP[loop_name]
            return cmd

        peer = peers.Peer(f"uvicorn-{loop_name}", base.describe, base.needs, base.module, None, on_loop)
        return runner.PeerProcess(peer, cpu=args.server_cpu, scratch=scratch, path=PATH).start()
    return ServerProcess(
        command=child_command(workload, loop_name), cpu=args.server_cpu, log_path=scratch / "server.log"
    ).start()


def loop_mismatch(pid: int, loop_name: str) -> str | None:
    """Why the server ``pid`` is not running on ``loop_name``, from outside, or None.

    A loop factory that fell back, or a policy that was not the one in force,
    would give another loop's figures under this loop's name: so look.  uvloop's
    loop is a mapped shared object (and libuv may hold a ring of its own, for
    file operations); otherwise an io_uring loop holds a ring fd
    (anon_inode:[io_uring]); asyncio's default loop has neither."""
    rings = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                rings += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]"
    with open(f"/proc/{pid}/maps") as f:
        uvloop_mapped = "/uvloop/loop." in f.read()
    found = "uvloop" if uvloop_mapped else "uring" if rings else "asyncio"
    return None if found == loop_name else f"asked for loop {loop_name}, the server runs {found}'s"


def user_ticks(server: ServerProcess) -> tuple[int, int]:
    """(user, user+system) ticks of the server's session so far."""
    user = total = 0
    for _pid, fields in session_group(server.pgid):
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        user += utime + cutime
        total += utime + stime + cutime + cstime
    return user, total


def sys_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    ticks = after[1] - before[1]
    return round(100.0 * (ticks - (after[0] - before[0])) / ticks, 1) if ticks > 0 else None


class Profiled:
    """``--profile``'s tool attached to the server for one window, or nothing.

    Set ``requests`` inside the block; ``added`` holds the tool's summary after it."""

    def __init__(self, args: argparse.Namespace, name: str, server: ServerProcess) -> None:
        self.args, self.name, self.server = args, name, server
        self.tool: profilers.Attached | None = None
        self.requests = 0
        self.added: dict[str, Any] = {}

    def __enter__(self) -> Profiled:
        if self.args.profile:
            self.tool = profilers.attach(self.args, self.name, self.server.pid)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self.tool is None:
            return
        if exc_type is not None:
            self.tool.kill()
            return
        self.added = {"profile": self.tool.detach(self.requests), "perturbed_by": self.args.profile}


def run_echo(args: argparse.Namespace, name: str, server: ServerProcess) -> dict[str, Any]:
    from iomodels.loadgen import LoadConfig, LoadGenerator

    config = LoadConfig(
        host=server.host,
        port=server.port,
        connections=args.connections,
        msize=args.msize,
        timeout_s=TIMEOUT_S,
        cpus=frozenset({args.client_cpu}) if args.client_cpu is not None else None,
        prime=True,  # every connection answered once before any clock starts
    )
    with LoadGenerator(config) as gen:
        gen.setup(timeout_s=30.0)
        gen.run(args.warmup, record=False, drain_s=DRAIN_S)
        with Profiled(args, name, server) as profiled:
            cpu0, t0 = server.cpu_seconds(), user_ticks(server)
            window = gen.run(args.duration, record=True, drain_s=DRAIN_S)
            cpu1, t1 = server.cpu_seconds(), user_ticks(server)
            profiled.requests = req = window["requests"]
    return profiled.added | {
        "requests": req,
        "req_per_s": window["req_per_s"],
        "us_per_req": 1e6 * (cpu1 - cpu0) / req if req else None,
        "sys_pct": sys_share(t0, t1),
        "p50_us": window["latency"]["p50_us"],
        "p99_us": window["latency"]["p99_us"],
        "errors": window["errors_total"],
    }


def run_http(args: argparse.Namespace, name: str, server: ServerProcess) -> dict[str, Any]:
    from iomodels.webbench import wrk

    url = f"http://{server.host}:{server.port}{PATH}"
    cpus = {args.client_cpu} if args.client_cpu is not None else None
    wrk.run(url, connections=args.connections, duration_s=args.warmup, cpus=cpus)  # warm-up, unmeasured
    with Profiled(args, name, server) as profiled:
        cpu0, t0 = server.cpu_seconds(), user_ticks(server)
        result = wrk.run(url, connections=args.connections, duration_s=args.duration, cpus=cpus)
        cpu1, t1 = server.cpu_seconds(), user_ticks(server)
        profiled.requests = result.requests
    return profiled.added | {
        "requests": result.requests,
        "req_per_s": result.rps,
        "us_per_req": 1e6 * (cpu1 - cpu0) / result.requests if result.requests else None,
        "sys_pct": sys_share(t0, t1),
        "p50_us": result.p50_us,
        "p99_us": result.p99_us,
        "errors": result.errors,
    }


def run_micro(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    """The micro timing in a fresh process pinned to the server CPU (pinned by
    pinning this thread around the fork, as the harness pins servers)."""
    cmd = child_command("micro", loop_name, "--micro-n", str(args.micro_n))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    old_mask = None
    if args.server_cpu is not None:
        old_mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {args.server_cpu})
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    finally:
        if old_mask is not None:
            os.sched_setaffinity(0, old_mask)
    if done.returncode != 0:
        raise RuntimeError(f"micro on {loop_name} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cell(args: argparse.Namespace, workload: str, loop_name: str, round_no: int) -> dict[str, Any]:
    cell: dict[str, Any] = {"workload": workload, "loop": loop_name, "round": round_no}
    if workload == "micro":
        cell.update(run_micro(args, loop_name))
        return cell
    with (
        tempfile.TemporaryDirectory(prefix="aio-bench-") as scratch,
        start_server(args, workload, loop_name, Path(scratch)) as server,
    ):
        if why := loop_mismatch(server.pid, loop_name):
            raise RuntimeError(why)
        name = f"{workload}-{loop_name}-r{round_no}"
        cell.update((run_echo if workload in ECHO else run_http)(args, name, server))
        if not server.alive():
            raise RuntimeError(f"the server died during the window: {server.log_text()[-300:]}")
    return cell


# --------------------------------------------------------------------------
# 120 columns


def fit(text: str) -> str:
    line = text.split("\n", 1)[0]
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def short_error(exc: Exception) -> str:
    if isinstance(exc, ServerStartError):
        return f"{exc.what}: {exc.log_tail[-1] if exc.log_tail else 'no log'}"
    return f"{type(exc).__name__}: {exc}"


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


SERVER_HEAD = f"{'workload':9} {'loop':8} {'req/s':>7} {'us/req':>7} {'min-max':>13} {'sys%':>5} " \
              f"{'p50':>6} {'p99':>6} {'err':>4} {'xuvloop':>7} {'(per round)':>13} {'n':>2}"  # fmt: skip
MICRO_HEAD = (
    f"{'micro':9} {'loop':8} " + " ".join(f"{k + ' us':>11} {'x':>5}" for k in MICRO_KINDS) + f" {'n':>2}"
)


def cell_line(cell: dict[str, Any]) -> str:
    """One round's figures, as they come."""
    head = f"{cell['workload']:9} {cell['loop']:8} "
    if "error" in cell:
        return fit(head + cell["error"])
    if cell["workload"] == "micro":
        return head + " ".join(f"{cell[k]:11.3f} {'':5}" for k in MICRO_KINDS) + f" r{cell['round']}"
    return (
        head + f"{cell['req_per_s']:7.0f} {_f(cell['us_per_req'], '{:7.2f}')} {'':13} "
        f"{_f(cell['sys_pct'], '{:5.0f}')} {cell['p50_us']:6.0f} {cell['p99_us']:6.0f} "
        f"{cell['errors']:4d} {'':7} {'':13} r{cell['round']}"
    )


def summarise(cells: list[dict[str, Any]], workloads: list[str], loops: list[str]) -> dict[str, Any]:
    """Medians, ranges and ratios to uvloop, per workload and loop."""
    out: dict[str, Any] = {}
    for workload in workloads:
        keys = list(MICRO_KINDS) if workload == "micro" else ["us_per_req", "req_per_s", "sys_pct", "p50_us",
                                                                "p99_us", "errors"]  # fmt: skip
        ok = [c for c in cells if c["workload"] == workload and "error" not in c]
        per_loop: dict[str, Any] = {}
        for loop_name in loops:
            mine = [c for c in ok if c["loop"] == loop_name]
            if not mine:
                continue
            entry: dict[str, Any] = {"rounds": len(mine)}
            for key in keys:
                values = [c[key] for c in mine if c.get(key) is not None]
                if values:
                    entry[key] = statistics.median(values)
                    entry[key + "_min"], entry[key + "_max"] = min(values), max(values)
            per_loop[loop_name] = entry
        base = per_loop.get("uvloop")
        for loop_name, entry in per_loop.items():
            if base is None:
                break
            for key in MICRO_KINDS if workload == "micro" else ("us_per_req",):
                if entry.get(key) and base.get(key):
                    entry[key + "_x_uvloop"] = entry[key] / base[key]
                    paired = [
                        c[key] / u[key]
                        for c in ok
                        if c["loop"] == loop_name and c.get(key)
                        for u in ok
                        if u["loop"] == "uvloop" and u["round"] == c["round"] and u.get(key)
                    ]
                    if paired:
                        entry[key + "_x_uvloop_rounds"] = (min(paired), max(paired))
        out[workload] = per_loop
    return out


def median_tables(med: dict[str, Any]) -> list[str]:
    lines = []
    servers = {w: v for w, v in med.items() if w != "micro" and v}
    if servers:
        lines.append(SERVER_HEAD)
        for workload, per_loop in servers.items():
            for loop_name, e in per_loop.items():
                spread = f"{e['us_per_req_min']:.2f}-{e['us_per_req_max']:.2f}" if "us_per_req" in e else "-"
                x = _f(e.get("us_per_req_x_uvloop"), "{:.2f}")
                rounds = e.get("us_per_req_x_uvloop_rounds")
                xr = f"({rounds[0]:.2f}-{rounds[1]:.2f})" if rounds and len(set(rounds)) > 1 else ""
                lines.append(
                    f"{workload:9} {loop_name:8} {e['req_per_s']:7.0f} {_f(e.get('us_per_req'), '{:7.2f}')} "
                    f"{spread:>13} {_f(e.get('sys_pct'), '{:5.0f}')} {e['p50_us']:6.0f} {e['p99_us']:6.0f} "
                    f"{e['errors']:4.0f} {x:>7} {xr:>13} {e['rounds']:2d}"
                )
    if med.get("micro"):
        lines.append(MICRO_HEAD)
        for loop_name, e in med["micro"].items():
            cells = " ".join(f"{e[k]:11.3f} {_f(e.get(k + '_x_uvloop'), '{:5.2f}')}" for k in MICRO_KINDS)
            lines.append(f"{'micro':9} {loop_name:8} {cells} {e['rounds']:2d}")
    return [fit(line) for line in lines]


def target_lines(med: dict[str, Any]) -> list[str]:
    """Issue 11's targets: uring's us/req over uvloop's, medians of this run."""
    lines = []
    for workload, most in TARGETS.items():
        entry = med.get(workload, {}).get("uring", {})
        x = entry.get("us_per_req_x_uvloop")
        if x is None:
            continue
        verdict = "met" if x <= most else "not met"
        lines.append(
            f"target {workload}: uring {x:.2f}x uvloop's server CPU per request (<= {most:.2f}x): {verdict}"
        )
    return lines


# --------------------------------------------------------------------------


def build_parser() -> ArgParser:
    doc = __doc__ or ""
    ap = ArgParser(
        prog="bench/aio_bench.py",
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help=f"comma-separated workloads (default {','.join(WORKLOADS)})")  # fmt: skip
    ap.add_argument(
        "--loops", default=",".join(LOOPS), help=f"comma-separated loops (default {','.join(LOOPS)})"
    )
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --quick 1)")
    ap.add_argument("--duration", type=float, default=None, help="measured s per cell (default 5; --quick 1)")
    ap.add_argument(
        "--warmup", type=float, default=None, help="unmeasured s of load first (default 1; --quick 0.5)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="1 round of 1 s, a short micro: does everything run?"
    )
    ap.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    ap.add_argument("--msize", type=int, default=1024, help="echo bytes per request (default 1024)")
    ap.add_argument("--micro-n", type=int, default=None,
                    help="callbacks / timers per micro kind (default 200000; --quick 20000)")  # fmt: skip
    ap.add_argument(
        "--server-cpu", type=int, default=0, help="CPU of the servers; -1: no pinning (default 0)"
    )
    ap.add_argument("--client-cpu", type=int, default=1, help="CPU of the load; -1: no pinning (default 1)")
    ap.add_argument("--json", metavar="FILE", help="write the machine, every cell and the medians as JSON")
    ap.add_argument(
        "--profile", choices=profilers.TOOLS, help="attach this tool to each server, for its window"
    )
    ap.add_argument("--profile-dir", default="/tmp/aio_bench_profiles", help="profiles (default %(default)s)")
    ap.add_argument("--attach-delay", type=float, default=1.5, help="idle s after attaching (default 1.5)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy / perf sampling rate, Hz (default 250)")
    ap.add_argument("--serve", nargs=2, metavar=("WORKLOAD", "LOOP"), help=argparse.SUPPRESS)  # a child
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.micro_n is None:
        args.micro_n = 20_000 if args.quick else 200_000
    if args.serve:
        return child_main(args)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    workloads = [w.strip() for w in args.only.split(",") if w.strip()]
    loops = [name.strip() for name in args.loops.split(",") if name.strip()]
    if bad := [w for w in workloads if w not in WORKLOADS]:
        ap.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)}")
    if bad := [name for name in loops if name not in LOOPS]:
        ap.error(f"unknown loop(s) {', '.join(bad)}; choose from {', '.join(LOOPS)}")
    if not workloads or not loops or args.rounds < 1 or args.duration <= 0 or args.connections < 1:
        ap.error("need a workload, a loop, rounds >= 1, duration > 0, connections >= 1")
    args.server_cpu = None if args.server_cpu < 0 else args.server_cpu
    args.client_cpu = None if args.client_cpu < 0 else args.client_cpu
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})  # this orchestrating process too
    if args.profile:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)

    info = machine()
    print(fit(f"# {summary(info)}"))
    print(
        fit(f"# git {info['git_head']}, src sha256 {info['src_sha256']}, load {info['loadavg_at_start'][0]}")
    )
    print(fit(f"# connections={args.connections} msize={args.msize} duration={args.duration}s "
              f"warmup={args.warmup}s rounds={args.rounds} micro-n={args.micro_n} "
              f"server-cpu={args.server_cpu} client-cpu={args.client_cpu}"))  # fmt: skip
    runnable_loops = []
    for name in loops:  # an unavailable loop or workload is one line, once
        why = loop_unavailable(name)
        if why is None:
            runnable_loops.append(name)
        else:
            print(fit(f"loop {name}: unavailable: {why}"))
    runnable = []
    for w in workloads:
        why = workload_unavailable(w)
        if why is None:
            runnable.append(w)
        else:
            print(fit(f"{w}: unavailable: {why}"))
    cells: list[dict[str, Any]] = []
    for r in range(args.rounds):
        k = r % len(runnable_loops) if runnable_loops else 0
        order = runnable_loops[k:] + runnable_loops[:k]  # rotate: no loop always goes first
        for workload in runnable:
            for loop_name in order:
                try:
                    cell = run_cell(args, workload, loop_name, r)
                except Exception as exc:  # one broken cell must not stop the others
                    cell = {"workload": workload, "loop": loop_name, "round": r, "error": short_error(exc)}
                    cell["error_full"] = f"{type(exc).__name__}: {exc}"
                print(cell_line(cell), flush=True)
                if "profile" in cell:
                    for line in profilers.describe(cell["profile"]):
                        print(fit("  " + line))
                cells.append(cell)
    med = summarise(cells, runnable, runnable_loops)
    perturbed = f" (PERTURBED by {args.profile})" if args.profile else ""
    print(f"\nmedians over {args.rounds} round(s){perturbed}; us = server CPU µs per request "
          "(micro: per callback), x = ratio to uvloop")  # fmt: skip
    verdicts = [] if args.profile else target_lines(med)  # none on perturbed figures
    for line in median_tables(med) + verdicts:
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "cells": cells, "medians": med}, f, indent=1)
        print(fit(f"wrote {args.json}"))
    return 0 if cells and all("error" not in c for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
