"""Fixtures of the ring tests."""

import socket

import pytest

from iomodels.uring import Ring


@pytest.fixture
def ring():
    r = Ring(32)
    yield r
    r.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()
