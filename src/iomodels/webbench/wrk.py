"""wrk, the HTTP load generator, driven from Python.

wrk (https://github.com/wg/wrk, Debian package ``wrk``) keeps ``-c`` keep-alive
connections busy from ``-t`` threads for ``-d`` seconds and records every
response's latency in an HdrHistogram.  Its text report rounds; so we give it a
Lua script whose ``done()`` prints one JSON line with the exact counts and the
percentiles in microseconds, and whose ``request()`` returns ``depth``
requests at once when pipelining (TechEmpower's plaintext shape: 16).

wrk counts a response as an error when its status is not 2xx/3xx
(``errors.status``), and counts connect, read, write and timeout errors apart.
With pipelining, a response's latency is measured from the write of its
batch, as wrk does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass

INSTALL_HINT = "wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)"
_MARK = "IOMODELS_WRK "

# One request string per thread, built once in init(); done() runs once, in
# the main thread, after every thread has stopped.
_SCRIPT = r"""
local req
function init(args)
  local depth = tonumber(args[1]) or 1
  local path = args[2] or "/"
  local batch = {}
  for i = 1, depth do batch[i] = wrk.format("GET", path) end
  req = table.concat(batch)
end
function request() return req end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    "MARK", summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
""".replace("MARK", _MARK)


class WrkMissing(RuntimeError):
    pass


@dataclass
class WrkResult:
    requests: int  # responses completed in the window
    duration_s: float
    bytes: int
    errors_connect: int
    errors_read: int
    errors_write: int
    errors_status: int  # responses with a status other than 2xx/3xx
    errors_timeout: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return (
            self.errors_connect
            + self.errors_read
            + self.errors_write
            + self.errors_status
            + self.errors_timeout
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "rps": self.rps, "errors": self.errors}


def wrk_path() -> str | None:
    return shutil.which("wrk")


def parse_output(text: str) -> WrkResult:
    """The JSON line our script's done() printed; ValueError if there is none."""
    for line in text.splitlines():
        if line.startswith(_MARK):
            raw = json.loads(line[len(_MARK) :])
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                bytes=raw["bytes"],
                errors_connect=raw["connect"],
                errors_read=raw["read"],
                errors_write=raw["write"],
                errors_status=raw["status"],
                errors_timeout=raw["timeout"],
                p50_us=raw["p50_us"],
                p90_us=raw["p90_us"],
                p99_us=raw["p99_us"],
                max_us=raw["max_us"],
                mean_us=raw["mean_us"],
            )
    raise ValueError(f"no result line in wrk's output: {text[-500:]!r}")


def command(
    url: str,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    pipeline: int = 1,
    timeout_s: float = 2.0,
    script_path: str,
) -> list[str]:
    if connections < 1 or threads < 1 or pipeline < 1:
        raise ValueError("connections, threads and pipeline must be >= 1")
    path = "/" + url.split("://", 1)[-1].partition("/")[2]
    return [
        wrk_path() or "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        script_path,
        url,
        "--",
        str(pipeline),
        path,
    ]


def run(
    url: str,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    pipeline: int = 1,
    timeout_s: float = 2.0,
    cpus: set[int] | None = None,
) -> WrkResult:
    """Run wrk once against ``url`` (loopback only) and return its figures.

    ``cpus`` pins wrk (all its threads) to those CPUs, away from the server.
    """
    if wrk_path() is None:
        raise WrkMissing(INSTALL_HINT)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT)
    try:
        argv = command(
            url,
            connections=connections,
            duration_s=duration_s,
            threads=threads,
            pipeline=pipeline,
            timeout_s=timeout_s,
            script_path=script.name,
        )

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=duration_s + timeout_s + 30,
            preexec_fn=pin if cpus else None,  # wrk is exec'd at once: no lock is taken
            check=False,
        )
    finally:
        os.unlink(script.name)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-300:]}")
    return parse_output(done.stdout)
