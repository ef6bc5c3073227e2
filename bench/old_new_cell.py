"""The standard cell, an old tree against this one, interleaved: server CPU us/request.

    git worktree add /tmp/old-tree 1e8a634
    .venv/bin/python bench/old_new_cell.py /tmp/old-tree/src

Each server is started from its own tree's src/ (PYTHONPATH), pinned to CPU 0;
this tree's `iomodels bench` drives it from CPU 1: 100 connections, 1 KiB
echo, a 1 s warm-up, then 5 s measured; 3 rounds, the order swapped each
round.  BENCHMARKS.md, "The house made plain", has a run.
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from iomodels.core.server import parse_ready_line
from iomodels.harness.process import session_cpu_s

if len(sys.argv) != 2:
    sys.exit("usage: old_new_cell.py OLD_TREE/src")
TREES = {"old": sys.argv[1], "new": str(Path(__file__).resolve().parent.parent / "src")}
OUTSIDE = "/"  # run the servers from no tree: PYTHONPATH alone picks the code


def bench(port: int, seconds: int) -> dict:
    """This tree's load generator on the standard cell: 100 connections, 1 KiB echo."""
    argv = [sys.executable, "-m", "iomodels", "bench", "--port", str(port), "-c", "100",
            "-d", f"{seconds}s", "--protocol", "echo", "--msize", "1024", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=OUTSIDE, check=True)
    return json.loads(done.stdout)


def measure(tree: str, model: str) -> float:
    """Server CPU µs per request of ``model`` started from ``tree``."""
    serve = [sys.executable, "-m", "iomodels", "serve", "--model", model, "--protocol", "echo",
             "--port", "0", "--log-level", "warning"]  # fmt: skip
    os.sched_setaffinity(0, {0})  # the server inherits CPU 0
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=TREES[tree]),
                              start_new_session=True, cwd=OUTSIDE)  # fmt: skip
    os.sched_setaffinity(0, {1})  # the generator, CPU 1
    try:
        port = parse_ready_line(server.stdout.readline().decode()).port
        bench(port, 1)  # warm-up
        cpu0 = session_cpu_s(server.pid)
        requests = bench(port, 5)["requests"]
        return (session_cpu_s(server.pid) - cpu0) * 1e6 / requests
    finally:
        server.terminate()
        server.wait(10)


results: dict[tuple[str, str], list[float]] = {}
for rnd in range(3):
    for model in ("epoll", "io_uring", "uvloop"):
        for tree in ("old", "new") if rnd % 2 == 0 else ("new", "old"):
            results.setdefault((model, tree), []).append(measure(tree, model))
for (model, tree), values in sorted(results.items()):
    rounds = [round(x, 2) for x in values]
    print(f"{model:9} {tree}: median {statistics.median(values):.2f} us/req  rounds {rounds}")
