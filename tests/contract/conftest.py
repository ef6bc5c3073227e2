"""The black-box acceptance suite: what the conformance suite (every
behaviour over every model) does not check, through the CLI and loopback
sockets only.  Every test here carries the ``acceptance`` marker
(registered in tests/conftest.py): ``pytest -m acceptance`` runs just this
suite, ``-m 'not acceptance'`` everything else."""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.acceptance)


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    """Client sockets a test opens, closed at its end whatever happened."""
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()
