"""The standard cell, an old tree against this one, interleaved: server CPU us/request.

    git worktree add /tmp/old-tree 1e8a634
    .venv/bin/python bench/old_new_cell.py /tmp/old-tree/src

Each server is started from its own tree's src/ (PYTHONPATH), pinned to CPU 0;
this tree's `iomodels bench` drives it from CPU 1: 100 connections, 1 KiB
echo, a 1 s warm-up, then 5 s measured; 3 rounds, the order swapped each
round.  BENCHMARKS.md, "The house made plain", has a run.
"""

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
res = {}
for rnd in range(3):
    for model in ("epoll", "io_uring", "uvloop"):
        for tree in ("old", "new") if rnd % 2 == 0 else ("new", "old"):
            env = dict(os.environ, PYTHONPATH=TREES[tree])
            os.sched_setaffinity(0, {0})
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "iomodels",
                    "serve",
                    "--model",
                    model,
                    "--protocol",
                    "echo",
                    "--port",
                    "0",
                    "--log-level",
                    "warning",
                ],
                stdout=subprocess.PIPE,
                env=env,
                start_new_session=True,
                cwd="/tmp",
            )
            os.sched_setaffinity(0, {1})
            line = p.stdout.readline().decode()
            port = parse_ready_line(line).port
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "iomodels",
                    "bench",
                    "--port",
                    str(port),
                    "-c",
                    "100",
                    "-d",
                    "1s",
                    "--protocol",
                    "echo",
                    "--msize",
                    "1024",
                ],
                capture_output=True,
                cwd="/tmp",
            )
            c0 = session_cpu_s(p.pid)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "iomodels",
                    "bench",
                    "--port",
                    str(port),
                    "-c",
                    "100",
                    "-d",
                    "5s",
                    "--protocol",
                    "echo",
                    "--msize",
                    "1024",
                    "--json",
                ],
                capture_output=True,
                text=True,
                cwd="/tmp",
            )
            c1 = session_cpu_s(p.pid)
            import json

            doc = json.loads(out.stdout)
            n = doc["requests"]
            res.setdefault((model, tree), []).append((c1 - c0) * 1e6 / n)
            p.terminate()
            p.wait(10)
for (model, tree), v in sorted(res.items()):
    print(f"{model:9} {tree}: median {statistics.median(v):.2f} us/req  rounds {[round(x, 2) for x in v]}")
