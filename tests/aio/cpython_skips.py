"""The reviewed skip list for CPython's asyncio tests on ``UringEventLoop``.

One entry per test: ``"Class.test_name": "why it cannot pass here"``.
Reasons say what the test checks that this loop does differently by
design, or what is not built yet (then "not yet: ...").
"""

from __future__ import annotations

import unittest

SKIPS: dict[str, str] = {}


def apply_skips(module, skips: dict[str, str]) -> None:
    """Replace each listed test method by a skipped one; a test that no
    longer exists in a bound class is an error, so the list cannot rot."""
    for key, reason in skips.items():
        cls_name, test_name = key.split(".")
        cls = getattr(module, cls_name, None)
        if cls is None:
            continue  # a class of the other binding module
        if not hasattr(cls, test_name):
            raise AttributeError(f"skip list names a missing test: {key}")
        setattr(cls, test_name, unittest.skip(reason)(getattr(cls, test_name)))
