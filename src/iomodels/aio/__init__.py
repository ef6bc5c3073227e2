"""An asyncio event loop on io_uring, installed the way uvloop is.

::

    import asyncio, iomodels.aio
    iomodels.aio.install()            # every new loop is a UringEventLoop
    asyncio.run(main())

    asyncio.run(main(), loop_factory=iomodels.aio.new_event_loop)  # 3.12+
    loop = iomodels.aio.new_event_loop()

Creating a loop where io_uring cannot be used (``kernel.io_uring_disabled``,
a seccomp profile, a kernel without the operations needed) raises
``UringUnavailable`` with the reason.  ``new_event_loop(fallback=True)`` and
``install(fallback=True)`` use asyncio's default loop instead, with one
warning.  See docs/aio.md for the design and the CPython test report.
"""

from __future__ import annotations

import asyncio
import warnings

from iomodels.aio.loop import EventLoopPolicy, UringEventLoop
from iomodels.aio.proactor import UringProactor, UringUnavailable

__all__ = [
    "EventLoopPolicy",
    "UringEventLoop",
    "UringProactor",
    "UringUnavailable",
    "available",
    "install",
    "new_event_loop",
]


def available() -> tuple[bool, str]:
    """``(True, "")`` if a ``UringEventLoop`` can be created here, else
    ``(False, reason)``."""
    try:
        proactor = UringProactor(entries=4)
    except UringUnavailable as exc:
        return False, str(exc)
    proactor.close()
    return True, ""


def new_event_loop(*, fallback: bool = False) -> asyncio.AbstractEventLoop:
    """A new ``UringEventLoop``; with ``fallback=True``, asyncio's default
    loop (and one warning) where io_uring cannot be used."""
    try:
        return UringEventLoop()
    except UringUnavailable as exc:
        if not fallback:
            raise
        warnings.warn(f"{exc}; using asyncio's default event loop", RuntimeWarning, stacklevel=2)
        return asyncio.DefaultEventLoopPolicy().new_event_loop()


def install(*, fallback: bool = False) -> None:
    """Make ``asyncio``'s policy create ``UringEventLoop``\\ s.

    The check is made now, so that a machine without io_uring fails here
    (or, with ``fallback=True``, keeps the default policy and warns once).
    """
    ok, why = available()
    if not ok:
        if not fallback:
            raise UringUnavailable(why)
        warnings.warn(f"{why}; keeping asyncio's default event loop", RuntimeWarning, stacklevel=2)
        return
    asyncio.set_event_loop_policy(EventLoopPolicy())
