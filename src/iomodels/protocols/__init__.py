"""Protocols, by the name the CLI uses (``--protocol``).

Besides the built-in names, ``--protocol MODULE:CALLABLE`` runs a protocol of
your own (a zero-argument callable returning a Protocol) on any model.

``http`` is built on demand (``iomodels.protocols.http``): it needs httptools,
an optional extra, and it shares one settings object (the server's state and
options) between the connections of a server.  Importing this package never
imports httptools.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from iomodels.core.errors import IOModelsError
from iomodels.core.protocol import Protocol
from iomodels.protocols.echo import EchoProtocol
from iomodels.protocols.upper import UpperProtocol

PROTOCOLS: dict[str, Callable[[], Protocol]] = {
    "echo": EchoProtocol,
    "upper": UpperProtocol,
}


# Built on demand, with the server's state and config (see _http_factory).
LAZY_PROTOCOLS = ("http",)


def names() -> list[str]:
    return [*PROTOCOLS, *LAZY_PROTOCOLS]


def _http_factory(state: Any, config: Any) -> Callable[[], Protocol]:
    try:
        from iomodels.protocols.http import make_factory
    except ImportError as exc:
        raise IOModelsError(f"{exc}") from None
    return make_factory(state, config)


def resolve(spec: str, state: Any = None, config: Any = None) -> Callable[[], Protocol]:
    """A protocol factory from a built-in name or ``module:callable``.

    ``state``: the server's ServerState (model name, stopping flag), None
    outside a server; ``config``: its ServerConfig.  Only ``http`` uses them."""
    if spec in PROTOCOLS:
        return PROTOCOLS[spec]
    if spec == "http":
        return _http_factory(state, config)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise IOModelsError(f"unknown protocol {spec!r}; choose from {', '.join(names())} or MODULE:CALLABLE")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise IOModelsError(f"cannot load protocol {spec!r}: {exc}") from None
    if not callable(factory):
        raise IOModelsError(f"protocol {spec!r} is not callable")
    return factory
