"""Protocols, by the name the CLI uses (``--protocol``).

Besides the built-in names, ``--protocol MODULE:CALLABLE`` runs a protocol of
your own (a zero-argument callable returning a Protocol) on any model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from iomodels.core.errors import IOModelsError
from iomodels.core.protocol import Protocol
from iomodels.protocols.echo import EchoProtocol
from iomodels.protocols.upper import UpperProtocol

PROTOCOLS: dict[str, Callable[[], Protocol]] = {
    "echo": EchoProtocol,
    "upper": UpperProtocol,
}


def names() -> list[str]:
    return list(PROTOCOLS)


def resolve(spec: str, state: object = None) -> Callable[[], Protocol]:
    """A protocol factory from a built-in name or ``module:callable``.
    ``state`` (the server's ServerState) is for protocols that report on it."""
    if spec in PROTOCOLS:
        return PROTOCOLS[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise IOModelsError(
            f"unknown protocol {spec!r}; choose from {', '.join(PROTOCOLS)} or MODULE:CALLABLE"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise IOModelsError(f"cannot load protocol {spec!r}: {exc}") from None
    if not callable(factory):
        raise IOModelsError(f"protocol {spec!r} is not callable")
    return factory
