"""serve --workers under load: a rolling reload (SIGHUP) under wrk fails no
request, on every model; the kernel spreads connections evenly over the
workers, with one SO_REUSEPORT socket each and with one shared socket."""

from __future__ import annotations

import shutil
import signal
import threading

import pytest
from workers_support import connections_per_worker, wait_workers, worker_pids

from iomodels import models
from iomodels.webbench import wrk

from helpers import Server, model_params, raise_nofile, roundtrip

needs_wrk = pytest.mark.skipif(wrk.wrk_path() is None, reason=wrk.INSTALL_HINT)


@needs_wrk
@pytest.mark.parametrize("model", model_params())
def test_rolling_reload_under_wrk_fails_no_request(model: str) -> None:
    _reload_under_wrk(model, [])


@needs_wrk
@pytest.mark.parametrize("model", model_params(["epoll", "threads", "io_uring", "asyncio"]))
def test_rolling_reload_with_a_shared_listener_fails_no_request(model: str) -> None:
    _reload_under_wrk(model, ["--shared-listener"])


def _reload_under_wrk(model: str, extra: list[str]) -> None:
    with Server(model, "--workers", "2", "--graceful-timeout", "3", *extra, protocol="http") as server:
        before = wait_workers(server, 2)
        result: list[wrk.WrkResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                wrk.run(f"http://{server.host}:{server.port}/plaintext", connections=16, duration_s=2)
            )
        )
        load.start()
        try:
            threading.Event().wait(0.6)
            server.signal(signal.SIGHUP)
        finally:
            load.join(30)
        assert result, "wrk did not finish"
        figures = result[0]
        after = wait_workers(server, 2, exclude=before, timeout=10)
        print(f"\n{model}: reload under wrk: {figures.requests} requests, errors {figures.as_dict()}")
        assert figures.requests > 100, f"too little load to mean anything: {figures}"
        assert figures.errors == 0, (
            f"{model}: failed requests across a reload: connect {figures.errors_connect}, read "
            f"{figures.errors_read}, write {figures.errors_write}, timeout {figures.errors_timeout}, "
            f"non-2xx {figures.errors_status}; log:\n{_log_without_connections(server)}"
        )
        assert set(after).isdisjoint(before)


def _log_without_connections(server: Server) -> str:
    return "\n".join(line for line in server.stderr().splitlines() if "DEBUG connection" not in line)[-3000:]


CONNECTIONS = 400
SPREAD_MODELS = ["epoll", "threads", "io_uring", "asyncio"]


# io_uring on a shared socket is left out: its accepts wait on the socket
# together and the same worker takes every connection (400 to 0 here, see
# docs/workers.md); with a socket each, the kernel's hash spreads them.
SPREAD_CASES = [(model, "reuseport") for model in SPREAD_MODELS] + [
    (model, "shared") for model in SPREAD_MODELS if model != "io_uring"
]


@pytest.mark.parametrize(("model", "listener"), SPREAD_CASES, ids=[f"{m}-{mode}" for m, mode in SPREAD_CASES])
@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) counts the connections: not installed")
def test_connections_spread_evenly_over_workers(model: str, listener: str) -> None:
    ok, reason = models.available(model)
    if not ok:
        pytest.skip(f"{model}: {reason}")
    raise_nofile(CONNECTIONS + 100)
    extra = ["--shared-listener"] if listener == "shared" else []
    with Server(model, "--workers", "2", *extra) as server:
        wait_workers(server, 2)
        clients = []
        try:
            for i in range(CONNECTIONS):
                sock = server.connect()
                roundtrip(sock, b"%d\n" % i)  # accepted and served, not queued
                clients.append(sock)
            counts = connections_per_worker(server)
        finally:
            for sock in clients:
                sock.close()
        mean = CONNECTIONS / 2
        print(f"\n{model} {listener}: connections per worker {sorted(counts.values())} (mean {mean:g})")
        assert sum(counts.values()) == CONNECTIONS, f"counted {counts} of {CONNECTIONS}"
        assert len(counts) == 2 and set(counts) == set(worker_pids(server))
        # With a socket each (SO_REUSEPORT) the kernel's hash spreads them:
        # within 20 %; so do the blocking workers on a shared socket, which
        # wait in accept() in turn (threads: 200/200).  The readiness loops
        # on a shared socket are woken together and whoever is scheduled
        # first accepts: that spread is the scheduler's, within 25 % with
        # other tests running but 44/356 on a quiet machine, so for them the
        # test asks only that both take a share (docs/workers.md).
        herd = listener == "shared" and model in ("epoll", "asyncio")
        tolerance = 0.9 if herd else 0.2
        for pid, count in counts.items():
            assert abs(count - mean) <= tolerance * mean, (
                f"worker {pid}: {count} connections, mean {mean:g}: {counts}"
            )
