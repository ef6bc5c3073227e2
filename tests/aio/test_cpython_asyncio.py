"""CPython's own event-loop tests, bound to ``UringEventLoop``.

CPython runs the test classes of ``Lib/test/test_asyncio`` that exercise a
loop through its public API once per loop (``EPollEventLoopTests``,
``ProactorEventLoopTests``, ...), each a ``TestCase`` whose
``create_event_loop()`` / ``new_loop()`` makes that loop.  The classes
below do the same for ours.  Every CPython test module resets the event
loop policy in its ``tearDownModule``, and some tests create loops through
the policy (``asyncio.new_event_loop()``, the subprocess watcher tests), so
each test also runs under our ``EventLoopPolicy``, set in ``setUp`` and
restored in ``tearDown``; the loop factory is never left to a global.

The CPython modules are imported as modules (never ``from ... import
Class``), so that pytest collects only the bound classes below, not
CPython's own.  Tests that cannot pass here are skipped by name, with one
reason each, from ``cpython_skips.SKIPS``.
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

from test.test_asyncio import functional as _functional  # noqa: E402,F401
from test.test_asyncio import test_buffered_proto as _buffered_proto  # noqa: E402
from test.test_asyncio import test_events as _events  # noqa: E402
from test.test_asyncio import test_sendfile as _sendfile  # noqa: E402
from test.test_asyncio import test_server as _server  # noqa: E402
from test.test_asyncio import test_sock_lowlevel as _sock_lowlevel  # noqa: E402
from test.test_asyncio import test_sslproto as _sslproto  # noqa: E402
from test.test_asyncio import test_streams as _streams  # noqa: E402
from test.test_asyncio import test_subprocess as _subprocess  # noqa: E402
from test.test_asyncio import utils as test_utils  # noqa: E402

from aio.cpython_skips import SKIPS, apply_skips  # noqa: E402

try:
    from test.test_asyncio import test_ssl as _ssl
except ImportError:  # pragma: no cover - no ssl module
    _ssl = None


class UringPolicy:
    """Run each test under our policy (restored afterwards), so that loops
    made through ``asyncio.new_event_loop()`` are ours too."""

    def setUp(self):
        self._saved_policy = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(aio.EventLoopPolicy())
        super().setUp()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            asyncio.set_event_loop_policy(self._saved_policy)

    def create_event_loop(self):
        return aio.UringEventLoop()

    def new_loop(self):
        return aio.UringEventLoop()


class UringEventLoopTests(
    UringPolicy, _events.UnixEventLoopTestsMixin, _events.SubprocessTestsMixin, test_utils.TestCase
):
    pass


class UringSockTests(UringPolicy, _sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase):
    pass


class UringStartServerTests(UringPolicy, _server.SelectorStartServerTests):
    # The selector class: it adds the Unix-socket test the Windows one lacks.
    pass


class UringBufferedProtocolTests(UringPolicy, _buffered_proto.BaseTestBufferedProtocol, unittest.TestCase):
    pass


class UringSendfileTests(UringPolicy, _sendfile.SendfileTestsBase, test_utils.TestCase):
    pass


class UringStartTLSTests(UringPolicy, _sslproto.BaseStartTLS, unittest.TestCase):
    pass


class UringStreamTests(UringPolicy, _streams.StreamTests):
    def setUp(self):
        super().setUp()  # StreamTests.setUp made a loop through our policy
        assert isinstance(self.loop, aio.UringEventLoop), self.loop


class UringSubprocessThreadedWatcherTests(UringPolicy, _subprocess.SubprocessThreadedWatcherTests):
    pass


class UringSubprocessSafeWatcherTests(UringPolicy, _subprocess.SubprocessSafeWatcherTests):
    pass


class UringSubprocessPidfdWatcherTests(UringPolicy, _subprocess.SubprocessPidfdWatcherTests):
    pass


if _ssl is not None:

    class UringSSLTests(UringPolicy, _ssl.TestSSL):
        pass


BOUND = [cls for name, cls in list(globals().items()) if name.startswith("Uring") and name.endswith("Tests")]
apply_skips(sys.modules[__name__], SKIPS)
