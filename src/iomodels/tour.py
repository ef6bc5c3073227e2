"""``iomodels tour``: the seed's session against every model available here.

For each model: start ``iomodels serve --model M --port 0`` (iomodels.harness),
send the seed's two lines through the client, check the replies, stop the
server with SIGTERM and check it exits 0; then print one table.
"""

from __future__ import annotations

import io
import signal
import time
from dataclasses import dataclass
from signal import SIGKILL

from iomodels import client, models
from iomodels.harness import ServerProcess, ServerStartError

SESSION = "hello\nstraße\n".encode()
EXPECTED = b"HELLO\nSTRASSE\n"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


@dataclass
class TourResult:
    model: str
    ok: bool
    detail: str


def visit(model: str) -> TourResult:
    ok, reason = models.available(model)
    if not ok:
        return TourResult(model, False, f"unavailable: {reason}")
    server = ServerProcess(model, "upper", ready_timeout_s=READY_TIMEOUT_S)
    try:
        server.start()
        out = io.BytesIO()
        client.run(server.host, server.port, io.BytesIO(SESSION), out)
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        status = server.wait(STOP_TIMEOUT_S)
        took_ms = (time.monotonic() - start) * 1000
        replies = out.getvalue()
        if replies != EXPECTED:
            return TourResult(model, False, f"replies {replies!r}, expected {EXPECTED!r}")
        if status is None:
            return TourResult(model, False, f"still running {STOP_TIMEOUT_S:.0f} s after SIGTERM")
        if status != 0:
            return TourResult(model, False, f"exit status {status} after SIGTERM")
        shown = replies.decode().strip().replace("\n", " ")
        return TourResult(model, True, f"{shown}; SIGTERM -> exit 0 in {took_ms:.0f} ms")
    except (OSError, client.ClientError, ServerStartError) as exc:
        return TourResult(model, False, f"failed: {exc}")
    finally:
        server.stop(SIGKILL, 0.0)  # a no-op after a clean exit; else the whole group goes


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
