"""serve --workers: a second server on the port of a running one is refused,
as without --workers."""

from __future__ import annotations

import http.client
import subprocess
import sys

import pytest
from workers_support import wait_workers

from helpers import Server


def _index_model(port: int) -> str:
    """The model named by the index page of whichever server answers on ``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body[:200])
        return body.split("iomodels: model ", 1)[1].split("<", 1)[0]
    finally:
        conn.close()


FIRST = {"workers": ("epoll", ("--workers", "2")), "plain": ("epoll", ())}
SECOND = {"workers": ("threads", ("--workers", "2")), "plain": ("threads", ())}


@pytest.mark.parametrize(
    ("first", "second"),
    [("workers", "workers"), ("workers", "plain"), ("plain", "workers")],
    ids=lambda kind: kind,
)
def test_second_server_on_the_port_is_refused(first: str, second: str) -> None:
    model, args = FIRST[first]
    with Server(model, *args, protocol="http") as server:
        if args:
            wait_workers(server, 2)
        other_model, other_args = SECOND[second]
        command = [sys.executable, "-m", "iomodels", "serve", "--model", other_model, "--protocol", "http"]
        command += ["--host", "127.0.0.1", "--port", str(server.port), *other_args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert done.returncode == 1, f"status {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        assert "listening" not in done.stdout
        assert "Address already in use" in done.stderr, done.stderr
        # Every request reaches the first server (each on a new connection, so
        # SO_REUSEPORT would spread them): none is served by the second.
        answered_by = [_index_model(server.port) for _ in range(40)]
        assert answered_by == [model] * 40, answered_by
        assert server.alive()
