"""``iomodels tour``: the seed's session against every model available here.

For each model: start ``iomodels serve --model M --port 0`` as a subprocess,
send the seed's two lines through the client, check the replies, stop the
server with SIGTERM and check it exits 0; then print one table.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from iomodels import client, models

SESSION = "hello\nstraße\n".encode()
EXPECTED = b"HELLO\nSTRASSE\n"
READY_TIMEOUT_S = 15.0


@dataclass
class TourResult:
    model: str
    ok: bool
    detail: str


def _read_ready_line(proc: subprocess.Popen) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(READY_TIMEOUT_S):
            raise TimeoutError(f"no ready line within {READY_TIMEOUT_S:.0f} s")
    line = proc.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"server exited with status {proc.wait(5)} before it was ready")
    return line


def visit(model: str) -> TourResult:
    ok, reason = models.available(model)
    if not ok:
        return TourResult(model, False, f"unavailable: {reason}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iomodels",
            "serve",
            "--model",
            model,
            "--port",
            "0",
            "--log-level",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        line = _read_ready_line(proc)
        port = int(line.split()[2].rsplit(":", 1)[1])
        out = io.BytesIO()
        client.run("127.0.0.1", port, io.BytesIO(SESSION), out)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(10)
        took_ms = (time.monotonic() - start) * 1000
        replies = out.getvalue()
        if replies != EXPECTED:
            return TourResult(model, False, f"replies {replies!r}, expected {EXPECTED!r}")
        if status != 0:
            return TourResult(model, False, f"exit status {status} after SIGTERM")
        shown = replies.decode().strip().replace("\n", " ")
        return TourResult(model, True, f"{shown}; SIGTERM -> exit 0 in {took_ms:.0f} ms")
    except (OSError, client.ClientError, TimeoutError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return TourResult(model, False, f"failed: {exc}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def main() -> int:
    print("The seed's session, printf 'hello\\nstraße\\n' | iomodels client, against every model:\n")
    width = max(len(name) for name in models.names())
    failed = 0
    for name in models.names():
        result = visit(name)
        unavailable = result.detail.startswith("unavailable")
        mark = "ok" if result.ok else ("skip" if unavailable else "FAIL")
        failed += not result.ok and not unavailable
        print(f"  {name:<{width}}  {mark:<4}  {result.detail}", flush=True)
    print("\nServe one yourself: iomodels serve --model epoll   (then: iomodels client)")
    return 1 if failed else 0
