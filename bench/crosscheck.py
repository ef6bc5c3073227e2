"""Cross-check `iomodels bench` against an independent C load generator.

For each server (our epoll model, a plain asyncio echo server), run the two
generators alternately, the same load each time (closed loop, N connections,
1 KiB echo), server pinned to CPU 0 and generator to CPU 1, and print
req/s and latency percentiles side by side.  Loopback only.

Usage: python bench/crosscheck.py [--connections 50] [--duration 3] [--rounds 3]
Needs gcc (builds bench/echo_load.c into a temporary directory).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from argparse import RawDescriptionHelpFormatter
from pathlib import Path

from iomodels.harness import ArgParser, ServerProcess

HERE = Path(__file__).resolve().parent
SERVERS = {  # name -> ServerProcess keyword arguments
    "iomodels epoll": {"model": "epoll"},
    "plain asyncio": {"command": [sys.executable, str(HERE / "asyncio_echo.py"), "0"]},
}


def run_c(binary: str, port: int, conns: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "1", binary, str(port), str(conns), str(duration), "1024", "1"],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    fields = dict(item.split("=") for item in out.split())
    return {
        "req/s": float(fields["req_per_s"]),
        "p50": float(fields["p50_us"]),
        "p99": float(fields["p99_us"]),
        "errors": float(fields["errors"]),
    }


def run_py(port: int, conns: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            "-m",
            "iomodels",
            "bench",
            "--port",
            str(port),
            "-c",
            str(conns),
            "-d",
            f"{duration}s",
            "--warmup",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    doc = json.loads(out)
    lat = doc["latency"]
    return {
        "req/s": doc["req_per_s"],
        "p50": lat["p50_us"],
        "p99": lat["p99_us"],
        "errors": doc["errors_total"],
    }


def main() -> int:
    parser = ArgParser(description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "echo_load")
        subprocess.run(["gcc", "-O2", "-o", binary, str(HERE / "echo_load.c")], check=True)
        print(
            f"{args.connections} connections, 1 KiB echo, closed loop, {args.duration:g} s x {args.rounds} "
            "rounds, server on CPU 0, generator on CPU 1; medians"
        )
        print(f"{'server':<16} {'generator':<16} {'req/s':>9} {'p50 us':>8} {'p99 us':>8} {'errors':>7}")
        for name, how in SERVERS.items():
            with ServerProcess(**how, cpu=0) as server:
                port = server.port
                results: dict[str, list[dict[str, float]]] = {"C echo_load": [], "iomodels bench": []}
                # Unrecorded warm-up: a fresh asyncio server reads into 256 KiB
                # mmap'd buffers until glibc's threshold adapts (BENCHMARKS.md).
                run_c(binary, port, args.connections, 1.0)
                for _ in range(args.rounds):  # alternate, so drift hits both alike
                    results["C echo_load"].append(run_c(binary, port, args.connections, args.duration))
                    results["iomodels bench"].append(run_py(port, args.connections, args.duration))
                for gen, runs in results.items():
                    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    print(
                        f"{name:<16} {gen:<16} {med['req/s']:>9.0f} {med['p50']:>8.0f} {med['p99']:>8.0f} "
                        f"{med['errors']:>7.0f}"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
