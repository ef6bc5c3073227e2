"""``iomodels bench``: wrk-style command line over the load generator.

``--protocol http`` loads an HTTP/1.1 server instead (ours, or any other):
keep-alive, ``--pipeline N`` requests per write, every response parsed and
checked (http_wire.py); ``bench/crosscheck.py --against wrk`` compares it
with wrk on the same server.

One run is: start the workers, connect (idle connections proven alive by
one round trip each), ``--warmup`` of unmeasured load, drain, then
``--duration`` of measured load, drain, report.  The text output names the
loop kind ("closed loop" or "open loop at R req/s") because the two measure
different things (see engine.py); ``--json`` prints one JSON object carrying
the encoded HDR histogram, and ``--merge`` adds up such objects from runs
made elsewhere (other machines, other shells) into one report.

Exit status: 0 when at least one request completed and no error was
counted, 1 otherwise (errors are measurements, but a script should see
them), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from iomodels.harness.cli import ArgParser, at_least
from iomodels.loadgen import hist
from iomodels.loadgen.engine import ERROR_KINDS
from iomodels.loadgen.runner import LoadConfig, LoadGenerator, aggregate

ECHO_KINDS = ("connect", "read", "write", "timeout", "mismatch")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def parse_duration(text: str) -> float:
    """'10s', '1m', '500ms', '1.5' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10s, 1m, 500ms)")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def parse_cpus(text: str) -> frozenset[int]:
    """'1', '1,3', '1-3' -> a CPU set."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list: {text!r} (e.g. 1 or 1-3 or 0,2)") from None
    return frozenset(cpus)


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="iomodels bench",
        description="Load an echo, upper or HTTP/1.1 server over TCP (any server, not only ours) and "
        "report req/s, MiB/s, latency percentiles from an HDR histogram, and errors by kind. Every reply "
        "is checked. Without -R: closed loop (each connection sends its next request when the "
        "reply is complete). With -R: open loop at that total rate, latency counted from the "
        "intended send time, so a stalled server shows in the percentiles.",
        epilog="HTTP (--protocol http): keep-alive connections send GET --path (default /plaintext), "
        "or with --method POST a --msize byte body (to /echo by default); --pipeline N sends N "
        "requests per write and matches the responses in order. Every response is parsed and "
        "checked: status line and header lines (RFC 9112 grammar), Content-Length or chunked "
        "framing, a 2xx status, and the body where the route's is known (/plaintext, /json, "
        "/echo, /upper). A wrong response counts as an error by kind (status, mismatch, "
        "malformed, read...) and its connection is closed and re-opened. Latency: one sample per "
        "response, from the send of its batch (wrk keeps one per batch); the next batch goes out "
        "as soon as the last response is read. --idle connections are proven alive by one "
        "batch; a server's keep-alive timeout (ours: serve --keepalive-timeout, 5 s) closes them, "
        "which counts as read errors. Cross-checked against wrk: "
        "python bench/crosscheck.py --against wrk. "
        "Example: iomodels bench --protocol http --port 8000 -c 100 -d 5s --pipeline 16",
    )
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=at_least(1), default=8080, help="server port (default 8080)")
    p.add_argument(
        "-c", "--connections", type=at_least(1), default=10, help="active connections (default 10)"
    )
    p.add_argument(
        "-d", "--duration", type=parse_duration, default=10.0, help="measured time: 10s, 1m (default 10s)"
    )
    p.add_argument(
        "--warmup", type=parse_duration, default=1.0, help="unmeasured load before it (default 1s)"
    )
    p.add_argument(
        "--msize",
        type=at_least(1),
        default=1024,
        help="bytes per request; with --protocol http, the body of a POST (default 1024)",
    )
    p.add_argument("--protocol", choices=["echo", "upper", "http"], default="echo", help="(default echo)")
    http = p.add_argument_group("HTTP (--protocol http)")
    http.add_argument(
        "--path",
        default=None,
        help="request target (default /plaintext; /echo with --method POST)",
    )
    http.add_argument(
        "--method",
        choices=["GET", "HEAD", "POST"],
        default="GET",
        help="GET, HEAD, or POST with a --msize byte body (default GET)",
    )
    http.add_argument(
        "--pipeline",
        type=at_least(1),
        default=1,
        metavar="N",
        help="requests per write, responses matched in order; with -R the rate still counts "
        "requests (default 1)",
    )
    p.add_argument(
        "--idle",
        type=at_least(0),
        default=0,
        metavar="N",
        help="extra connections held open and idle for the whole run, each first proven alive by one "
        "round trip (default 0)",
    )
    p.add_argument(
        "-R",
        "--rate",
        type=float,
        default=0.0,
        metavar="REQ_PER_S",
        help="open loop at this total rate (default: closed loop)",
    )
    p.add_argument(
        "--workers",
        type=at_least(1),
        default=1,
        help="generator processes; their HDR histograms are merged (default 1)",
    )
    p.add_argument(
        "--timeout",
        type=parse_duration,
        default=2.0,
        help="a reply later than this is a timeout error; the connection is re-opened (default 2s)",
    )
    p.add_argument(
        "--drain",
        type=parse_duration,
        default=None,
        help="after the window, wait this long for the replies in flight (default: --timeout)",
    )
    p.add_argument(
        "--setup-timeout",
        type=parse_duration,
        default=None,
        help="stop waiting for connections / idle proofs of life after this "
        "(default 5s + 1s per 1000 connections); the run goes on with what is up",
    )
    p.add_argument("--cpus", type=parse_cpus, default=None, help="pin the workers to these CPUs (e.g. 1-3)")
    p.add_argument("--json", action="store_true", help="print one JSON object (with the encoded histogram)")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="FILE",
        help="no load: merge the --json outputs of earlier runs (counters summed, histograms added)",
    )
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load described by parsed ``args``; the --json object."""
    config = LoadConfig(
        host=args.host,
        port=args.port,
        connections=args.connections,
        idle=args.idle,
        msize=args.msize,
        protocol=args.protocol,
        rate=args.rate,
        workers=min(args.workers, args.connections + args.idle),
        timeout_s=args.timeout,
        cpus=args.cpus,
        method=args.method,
        path=args.path,
        pipeline=args.pipeline,
    )
    drain = args.timeout if args.drain is None else args.drain
    setup_timeout = args.setup_timeout
    if setup_timeout is None:
        setup_timeout = 5.0 + (args.connections + args.idle) / 1000
    with LoadGenerator(config) as gen:
        setup = gen.setup(setup_timeout)
        warm = gen.run(args.warmup, record=False, drain_s=drain) if args.warmup > 0 else None
        result = gen.run(args.duration, record=True, drain_s=drain)
    result["setup"] = {
        k: setup[k] for k in ("wall_s", "errors", "connects", "active_connected", "idle_alive")
    }
    result["setup"]["error_detail"] = setup["error_detail"]
    result["warmup"] = None if warm is None else {k: warm[k] for k in ("requests", "wall_s", "errors")}
    result["config"] = {
        "host": args.host,
        "port": args.port,
        "connections": args.connections,
        "idle": args.idle,
        "msize": args.msize,
        "protocol": args.protocol,
        "rate": args.rate,
        "loop": "open" if args.rate > 0 else "closed",
        "workers": config.workers,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "timeout_s": args.timeout,
    }
    if args.protocol == "http":
        result["config"].update(method=args.method, path=args.path, pipeline=args.pipeline)
    return result


def format_result(r: dict[str, Any]) -> str:
    cfg = r.get("config", {})
    lat = r["latency"]
    if cfg.get("loop") == "open":
        loop = f"open loop at {cfg['rate']:g} req/s (latency from the intended send time)"
    else:
        loop = "closed loop (latency from the actual send; a stalled server is hidden, use -R)"
    lines = []
    if cfg.get("protocol") == "http":
        body = f", {cfg['msize']} B body" if cfg["method"] == "POST" else ""
        lines.append(
            f"{cfg['host']}:{cfg['port']} HTTP/1.1 {cfg['method']} {cfg['path']}{body}, "
            f"pipeline {cfg['pipeline']}, {cfg['connections']} connections (+{cfg['idle']} idle), "
            f"{cfg['workers']} worker(s), {loop}"
        )
        lines.append(f"  warm-up {cfg['warmup_s']:g} s, measured {cfg['duration_s']:g} s")
    elif cfg:
        lines.append(
            f"{cfg['host']}:{cfg['port']} {cfg['protocol']}, {cfg['msize']} B, {cfg['connections']} "
            f"connections (+{cfg['idle']} idle), {cfg['workers']} worker(s), {loop}"
        )
        lines.append(f"  warm-up {cfg['warmup_s']:g} s, measured {cfg['duration_s']:g} s")
    setup = r.get("setup") or {}
    if "idle_alive" in setup and cfg.get("idle"):
        lines.append(f"  idle         {setup['idle_alive']} of {cfg['idle']} proven alive and held")
    if setup.get("errors") and any(setup["errors"].values()):
        errs = ", ".join(f"{k} {n}" for k, n in setup["errors"].items() if n)
        lines.append(f"  setup errors {errs} (before the window; not in the counts below)")
    lines.append(
        f"  requests     {r['requests']} in {r.get('window_s', r['wall_s']):.2f} s: "
        f"{r['req_per_s']:.1f} req/s, "
        f"{r['mib_per_s']:.2f} MiB/s"
    )
    if lat["count"]:
        lines.append(
            "  latency us   "
            + "  ".join(f"{k[:-3]} {lat[k]}" for k in ("p50_us", "p90_us", "p99_us", "p99.9_us", "max_us"))
        )
    else:
        lines.append("  latency us   no request completed")
    errs = r["errors"]
    # status and malformed are HTTP's kinds: shown for HTTP, or if they ever count
    kinds = [k for k in ERROR_KINDS if k in ECHO_KINDS or cfg.get("protocol") == "http" or errs.get(k)]
    lines.append(
        f"  errors       {r['errors_total']} (" + ", ".join(f"{k} {errs.get(k, 0)}" for k in kinds) + ")"
    )
    for key, n in list(r.get("error_detail", {}).items())[:6]:
        lines.append(f"               {n} x {key}")
    if cfg.get("loop") == "open" and r.get("late_sends"):
        lines.append(f"  late sends   {r['late_sends']} (sent > 1 ms after their intended time)")
    lines.append(f"  generator    CPU {r['gen_cpu_pct']:.0f} % (sum over workers)")
    return "\n".join(lines)


def merge_files(paths: list[str]) -> dict[str, Any]:
    """Merge --json outputs: counters summed, histograms added, wall = the longest."""
    parts = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        data.setdefault("error_detail", {})
        data.setdefault("late_sends", 0)
        data.setdefault("active_connected", 0)
        data.setdefault("idle_alive", 0)
        data.setdefault("connects", 0)
        data["active_s"] = data.get("window_s", data["wall_s"])
        data["bytes_received"] = round(data.get("mib_per_s", 0.0) * data["active_s"] * 2**20)
        data["cpu_s"] = data.get("gen_cpu_s", 0.0)
        parts.append(data)
    merged = aggregate(parts)
    merged["merged_from"] = paths
    return merged


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.merge:
        try:
            result = merge_files(args.merge)
        except (OSError, ValueError, KeyError) as exc:
            sys.stderr.write(f"iomodels bench: error: cannot merge: {exc}\n")
            return 1
    else:
        if args.rate < 0:
            build_parser().error("--rate must be >= 0")
        if args.protocol != "http" and (args.path, args.method, args.pipeline) != (None, "GET", 1):
            build_parser().error("--path, --method and --pipeline need --protocol http")
        if args.path is None:
            args.path = "/echo" if args.method == "POST" else "/plaintext"
        if not args.path.startswith("/") or any(c.isspace() for c in args.path):
            build_parser().error(f"--path {args.path!r}: an origin-form target such as /plaintext")
        try:
            result = run(args)
        except RuntimeError as exc:
            sys.stderr.write(f"iomodels bench: error: {exc}\n")
            return 1
        except KeyboardInterrupt:
            return 130
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_result(result))
    return 0 if result["requests"] and not result["errors_total"] else 1


__all__ = ["hist", "main", "parse_cpus", "parse_duration"]
