"""CPython's tests of asyncio's loop-independent API, run on UringEventLoop.

These modules (locks, queues, task groups, timeouts, ``wait_for``,
``to_thread``, futures) test asyncio itself through
``unittest.IsolatedAsyncioTestCase``, whose runner creates the loop before
``setUp``; each class is bound here by giving that runner our loop factory
(``asyncio.Runner(loop_factory=...)``).  They check that callbacks, timers,
cancellation and ``run_in_executor`` behave on this loop as on the default.
"""

from __future__ import annotations

import asyncio
import sys
import unittest

import pytest

from iomodels import aio

ok, why = aio.available()
if not ok:
    pytest.skip(why, allow_module_level=True)

from test.test_asyncio import test_futures2 as _futures2  # noqa: E402
from test.test_asyncio import test_locks as _locks  # noqa: E402
from test.test_asyncio import test_queues as _queues  # noqa: E402
from test.test_asyncio import test_taskgroups as _taskgroups  # noqa: E402
from test.test_asyncio import test_threads as _threads  # noqa: E402
from test.test_asyncio import test_timeouts as _timeouts  # noqa: E402
from test.test_asyncio import test_waitfor as _waitfor  # noqa: E402

from aio.cpython_skips import SKIPS, apply_skips  # noqa: E402

MODULES = (_futures2, _locks, _queues, _taskgroups, _threads, _timeouts, _waitfor)


class UringRunner:
    """Make IsolatedAsyncioTestCase's runner create UringEventLoops."""

    def _setupAsyncioRunner(self):
        assert self._asyncioRunner is None, "asyncio runner is already initialized"
        self._asyncioRunner = asyncio.Runner(debug=True, loop_factory=aio.UringEventLoop)

    def setUp(self):
        loop = self._asyncioRunner.get_loop()
        assert isinstance(loop, aio.UringEventLoop), loop
        super().setUp()


def _bind() -> None:
    here = sys.modules[__name__]
    for module in MODULES:
        for name, cls in list(vars(module).items()):
            if (
                isinstance(cls, type)
                and issubclass(cls, unittest.IsolatedAsyncioTestCase)
                and cls.__module__ == module.__name__
            ):
                bound = type(f"Uring{name}", (UringRunner, cls), {"__module__": __name__})
                setattr(here, bound.__name__, bound)


_bind()
apply_skips(sys.modules[__name__], SKIPS)
