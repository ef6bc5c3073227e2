"""sigio: the classic variant (plain SIGIO, rescan everything) and the
fallback when the realtime signal queue overflows."""

import resource
from concurrent.futures import ThreadPoolExecutor

import pytest

from iomodels import models

from helpers import Server

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not models.available("sigio")[0], reason=models.available("sigio")[1]),
]


def many_exchanges(server: Server, clients: int = 100, upper: bool = False) -> list[bool]:
    def one(i: int) -> bool:
        data = f"client {i};".encode() * (1 + i % 200)
        return server.exchange(data) == (data.upper() if upper else data)

    with ThreadPoolExecutor(max_workers=50) as pool:
        return list(pool.map(one, range(clients)))


def test_classic_sigio_rescans_and_serves_everyone():
    with Server("sigio", "--sigio-classic", protocol="upper") as server:
        assert server.exchange("hello\nstraße\n".encode()) == b"HELLO\nSTRASSE\n"
        assert all(many_exchanges(server, upper=True))
        assert server.stop()[0] == 0


def test_realtime_queue_overflow_falls_back_to_rescan():
    """With RLIMIT_SIGPENDING at 4, the realtime queue overflows at once; the
    kernel sends plain SIGIO instead, and nothing is lost."""

    def tiny_queue() -> None:
        resource.setrlimit(resource.RLIMIT_SIGPENDING, (4, 4))

    server = Server("sigio", protocol="echo", preexec=tiny_queue)
    with server:
        assert all(many_exchanges(server, clients=200))
        assert "realtime signal queue overflowed" in server.stderr()
        assert server.stderr().count("realtime signal queue overflowed") == 1
        assert server.stop()[0] == 0
