"""nonblocking burns a CPU while idle, by design; the seed's sleep stops the burn."""

import time

import pytest

from helpers import Server

pytestmark = pytest.mark.timeout(60)


def idle_cpu(server: Server, seconds: float = 1.0) -> float:
    before = server.cpu_seconds()
    time.sleep(seconds)
    return (server.cpu_seconds() - before) / seconds


def test_busy_polling_burns_cpu_while_idle():
    with Server("nonblocking", protocol="echo") as server, Server("epoll", protocol="echo") as epoll:
        busy, calm = idle_cpu(server), idle_cpu(epoll)
        assert busy > 0.3, f"the busy loop used only {busy:.0%} of a CPU while idle"
        assert calm < 0.05, f"epoll used {calm:.0%} of a CPU while idle"


def test_poll_interval_stops_the_burn_and_still_serves():
    with Server("nonblocking", "--poll-interval", "0.05", protocol="echo") as server:
        assert idle_cpu(server) < 0.2
        assert server.exchange(b"slow but served") == b"slow but served"
