"""The registry of IO models: one module each, named as the CLI spells it.

``names()`` lists them in the order of the seed's chapters; ``available(name)``
probes for real (creates the poller, imports the optional library) and says
why not; ``get(name)`` returns the model's server class.
"""

from __future__ import annotations

import importlib

from iomodels.core.errors import ModelUnavailable, UnknownModel
from iomodels.core.server import BaseServer

# name -> (module, one line on how it waits and copies)
_MODELS: dict[str, tuple[str, str]] = {
    "blocking": ("iomodels.models.blocking", "one thread, blocking sockets, one client at a time"),
    "threads": ("iomodels.models.threads", "blocking IO, one thread per connection"),
    "processes": ("iomodels.models.processes", "blocking IO, one forked process per connection"),
    "threadpool": ("iomodels.models.threadpool", "blocking IO on a fixed pool of --threads workers"),
    "nonblocking": ("iomodels.models.nonblocking", "busy-polling loop over non-blocking sockets"),
    "select": ("iomodels.models.select", "readiness loop on select.select (fd < FD_SETSIZE)"),
    "poll": ("iomodels.models.poll", "readiness loop on select.poll"),
    "epoll": ("iomodels.models.epoll", "readiness loop on select.epoll (Linux)"),
    "kqueue": ("iomodels.models.kqueue", "readiness loop on select.kqueue (BSD, macOS)"),
    "sigio": ("iomodels.models.sigio", "signal-driven: a realtime signal per arrival, read via signalfd"),
    "asyncio": ("iomodels.models.asyncio", "the same protocols on the stdlib asyncio loop"),
    "uvloop": ("iomodels.models.uvloop", "the same protocols on uvloop (libuv)"),
    "aio": ("iomodels.models.aio", "the same protocols on iomodels.aio, an asyncio loop on io_uring"),
    "io_uring": (
        "iomodels.models.io_uring",
        "completion-based: the kernel waits and copies (io_uring, Linux)",
    ),
}


def names() -> list[str]:
    return list(_MODELS)


def describe(name: str) -> str:
    return _entry(name)[1]


def _entry(name: str) -> tuple[str, str]:
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; choose from: {', '.join(_MODELS)}") from None


def server_class(name: str) -> type[BaseServer]:
    """The model's server class, whether or not it can run here."""
    module = importlib.import_module(_entry(name)[0])
    return module.Server


def available(name: str) -> tuple[bool, str]:
    return server_class(name).available()


def get(name: str) -> type[BaseServer]:
    """The server class of a model that can run here, else ModelUnavailable."""
    cls = server_class(name)
    ok, reason = cls.available()
    if not ok:
        raise ModelUnavailable(name, reason)
    return cls
