"""``iomodels claims``: the seed's claims as experiments, each with a verdict.

Every claim is one module (``c01_blocking.py`` ...): the quote it checks in
the original Chinese and in English, an experiment returning plain numbers
(repeated, interleaved across the models it compares: ``Lab.interleave``),
and a pure verdict with its thresholds written next to it, decided on the
repeats' median and spread by the one rule in ``base.py``.  ``runner.py``
runs them bounded in time and writes claims.json, PNG figures and one
self-contained claims.html (``render.py``).
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from iomodels.claims.runner import main as run_main

    return run_main(argv)


__all__ = ["main"]
