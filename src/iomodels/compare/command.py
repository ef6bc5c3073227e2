"""The command line of ``iomodels compare`` (argument parsing, progress bar, files).

``--quick`` is the README's main job: every available model on the
whole connection grid in under 3 minutes on a 2-CPU machine, which costs
precision (1 s windows, one repeat): read its req/s as an order of
magnitude, its server µs/request as the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from iomodels import models
from iomodels.harness import EXIT_USAGE, ArgParser, machine, raise_nofile_limit, split_cpus
from iomodels.loadgen.command import parse_duration

QUICK = {"duration_s": 1.0, "warmup_s": 1.0, "settle_s": 0.25, "drain_s": 0.5, "timeout_s": 1.0}
FULL = {"duration_s": 3.0, "warmup_s": 2.0, "settle_s": 0.5, "drain_s": 1.0, "timeout_s": 2.0}
QUICK_BUDGET_S = 165.0  # --quick must finish under 3 minutes: re-runs stop before this


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"need integers >= 0: {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="iomodels compare",
        description="Run every available model as an echo server (pinned to one CPU) under the same "
        "closed-loop load (generator on the other CPUs) and compare req/s, latency percentiles, server "
        "CPU µs per request, memory, threads and descriptors. Writes results.json, PNG charts and a "
        "self-contained report.html to --out.",
    )
    p.add_argument("--quick", action="store_true", help="short windows, one repeat: under 3 minutes")
    p.add_argument(
        "--protocol",
        choices=["echo", "http"],
        default="echo",
        help="echo: our load generator, 'msize' bytes per request (default); http: every model as "
        "'iomodels serve --protocol http' and the --peers, driven by wrk (see docs/http.md)",
    )
    p.add_argument("--models", help="comma-separated models (default: every model of the registry)")
    p.add_argument(
        "--peers",
        help="http: comma-separated peers to run beside the models (default: all of "
        "gunicorn-sync, gunicorn-gthread, waitress, granian, uvicorn, nginx; 'none' for none)",
    )
    p.add_argument(
        "--app",
        metavar="MODULE:CALLABLE",
        help="http: the models serve this WSGI app instead of their built-in routes; "
        "iomodels.webbench.apps:wsgi_hello is the hello world the WSGI peers serve",
    )
    p.add_argument("--app-inline", action="store_true", help="http: run --app on the event loop's thread")
    p.add_argument("--path", default="/plaintext", help="http: the route wrk requests (default /plaintext)")
    p.add_argument(
        "--pipeline", type=int, default=1, help="http: requests per write, as TechEmpower's 16 (default 1)"
    )
    p.add_argument(
        "--connections", type=_int_list, default=[1, 10, 100, 1000], help="grid (default 1,10,100,1000)"
    )
    p.add_argument("--msize", type=int, default=1024, help="bytes per request (default 1024)")
    p.add_argument("--duration", type=parse_duration, help="measured window per cell (default 3s; quick 1s)")
    p.add_argument("--warmup", type=parse_duration, help="unmeasured load per server (default 2s; quick 1s)")
    p.add_argument("--repeats", type=int, default=1, help="rounds, interleaved across models (default 1)")
    p.add_argument(
        "--idle-sweep",
        type=_int_list,
        default=[],
        metavar="N,N,...",
        help="also run 10 active + N idle connections for each N (e.g. 0,1000,5000,15000)",
    )
    p.add_argument("--workers", type=int, default=None, help="generator processes (default: CPUs - 1, max 4)")
    p.add_argument(
        "--server-workers",
        default="0",
        metavar="N",
        help="run each model as 'iomodels serve --workers N' (a supervisor and N worker processes; "
        "'auto': one per CPU; docs/workers.md); the server is then not pinned to one CPU, and its CPU "
        "time is the supervisor's and the workers' (default 0: one process, pinned)",
    )
    p.add_argument("--out", default="report", help="report folder (default ./report)")
    p.add_argument("--json", action="store_true", help="also print results.json on stdout")
    p.add_argument(
        "--noise-threshold",
        type=float,
        default=30.0,
        metavar="PCT",
        help="re-run a cell once when other processes used more than PCT %% of a CPU (default 30)",
    )
    p.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="no run: rebuild the tables, charts and report.html from a saved results.json",
    )
    return p


def _server_workers(text: str) -> int:
    """--server-workers: what `serve --workers` takes (N >= 1 or auto), or 0 for none."""
    if text == "0":
        return 0
    from iomodels.cli import parse_workers

    try:
        return parse_workers(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc).replace("--workers", "--server-workers")) from None


def _settings(args: argparse.Namespace) -> Any:
    from iomodels.compare.runner import Settings

    preset = dict(QUICK if args.quick else FULL)
    if args.duration is not None:
        preset["duration_s"] = args.duration
    if args.warmup is not None:
        preset["warmup_s"] = args.warmup
    names = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else models.names()
    unknown = [m for m in names if m not in models.names()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(models.names())}")
    server_cpu, gen_cpus = split_cpus()
    workers = args.workers or max(1, min(4, len(gen_cpus or [0])))
    server_workers = _server_workers(args.server_workers)
    return Settings(
        models=names,
        connections=args.connections,
        msize=args.msize,
        repeats=max(1, args.repeats),
        idle_sweep=args.idle_sweep,
        workers=workers,
        server_workers=server_workers,
        server_cpu=server_cpu if server_workers <= 1 else None,
        gen_cpus=gen_cpus,
        noise_threshold=args.noise_threshold,
        budget_s=QUICK_BUDGET_S if args.quick else None,
        quick=args.quick,
        **preset,
    )


def _run_http(args: argparse.Namespace) -> int:
    """--protocol http: the models and the peers under wrk (iomodels.webbench)."""
    from iomodels.webbench import peers, report, wrk
    from iomodels.webbench.runner import HttpRunner, HttpSettings, summarize, table

    preset = QUICK if args.quick else FULL
    names = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else models.names()
    if args.peers is None:
        peer_names = peers.names()
    elif args.peers.strip() == "none":
        peer_names = []
    else:
        peer_names = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [m for m in names if m not in models.names()] + [p for p in peer_names if p not in peers.PEERS]
    if unknown:
        raise ValueError(
            f"unknown model(s) or peer(s) {', '.join(unknown)}; models: {', '.join(models.names())}; "
            f"peers: {', '.join(peers.names())}"
        )
    if args.pipeline < 1:
        raise ValueError("--pipeline must be >= 1")
    if args.app_inline and not args.app:
        raise ValueError("--app-inline needs --app MODULE:CALLABLE")
    server_args = ["--app", args.app] if args.app else []
    if args.app_inline:
        server_args.append("--app-inline")
    server_workers = _server_workers(args.server_workers)
    if server_workers:
        server_args += ["--workers", str(server_workers)]
    if wrk.wrk_path() is None:
        sys.stderr.write(f"iomodels compare: {wrk.INSTALL_HINT}\n")
        return 1
    settings = HttpSettings(
        targets=names + peer_names,
        connections=args.connections,
        duration_s=max(1.0, args.duration if args.duration is not None else preset["duration_s"]),
        warmup_s=args.warmup if args.warmup is not None else preset["warmup_s"],
        pipeline=args.pipeline,
        path=args.path,
        repeats=max(1, args.repeats),
        server_args=server_args,
    )
    raise_nofile_limit()  # wrk and the servers hold up to 1000 connections each
    started = time.monotonic()
    cells = HttpRunner(settings, progress=lambda line: sys.stderr.write(line + "\n")).run()
    rows = summarize(cells)
    written = report.write(Path(args.out), settings, cells, rows, machine())
    print(table(rows))
    print(f"iomodels compare --protocol http: {time.monotonic() - started:.0f} s; wrote "
          + ", ".join(str(p) for p in written))  # fmt: skip
    return 0


def _run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from iomodels.compare.runner import Runner, results_document

    settings = _settings(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raise_nofile_limit()  # idle sweeps hold thousands of sockets
    info = machine()
    if settings.gen_cpus:
        os.sched_setaffinity(0, set(settings.gen_cpus))  # this thread: off the server's CPU
    console = Console(stderr=True)
    started = time.monotonic()
    runner = Runner(settings, out)
    with Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("starting", total=runner.steps())
        runner.progress = lambda desc: progress.update(task, description=desc)
        runner.advance = lambda: progress.advance(task)
        runner.run()
        progress.update(task, description="done")
    command = "iomodels compare" + (" " + shlex.join(argv) if argv else "")
    return results_document(settings, runner.cells, command, time.monotonic() - started, info)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from iomodels.compare import render

    console = Console(stderr=args.json)
    if not console.is_terminal:
        console = Console(stderr=args.json, width=200)  # logs and pipes: do not wrap the table
    if args.protocol == "http" and not args.render:
        try:
            return _run_http(args)
        except ValueError as exc:
            sys.stderr.write(f"iomodels compare: error: {exc}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            sys.stderr.write("iomodels compare: interrupted\n")
            return 130
    if args.render:
        try:
            with open(args.render) as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"iomodels compare: error: cannot read {args.render}: {exc}\n")
            return 1
    else:
        try:
            doc = _run(args, argv)
        except ValueError as exc:
            sys.stderr.write(f"iomodels compare: error: {exc}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:
            sys.stderr.write("iomodels compare: interrupted\n")
            return 130
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.render:
        (out / "results.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    html_path = render.render(doc, out)
    render.terminal_tables(doc, console)
    console.print(
        f"{doc.get('command', '')}: {doc.get('elapsed_s', '?')} s; wrote {out / 'results.json'}, "
        f"{html_path} and the charts"
    )
    if args.json:
        print(json.dumps(doc, indent=1))
    return 1 if any(c.get("status") == "error" for c in doc["cells"]) else 0
