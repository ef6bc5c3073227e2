"""The project's exception hierarchy: small on purpose (curio errors.py)."""

from __future__ import annotations


class IOModelsError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelUnavailable(IOModelsError):
    """The model cannot run on this machine; the message says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} is not available here: {reason}")
        self.name = name
        self.reason = reason


class UnknownModel(IOModelsError):
    """No model of that name is registered."""


class DescriptorTooLarge(IOModelsError):
    """The poller cannot watch this descriptor number (select: fd >= FD_SETSIZE)."""
