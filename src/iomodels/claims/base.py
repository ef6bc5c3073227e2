"""What a claim is, and the four verdicts.

A claim module (``c01_blocking.py`` ...) defines, at module level:

  ID          "1", "2", ... the issue's numbering
  TITLE       a few words for the table
  QUOTE_ZH    the sentence it checks, copied exactly from the seed
  QUOTE_EN    the same in English
  MEASURES    one line: what the experiment measures
  run(lab, quick) -> dict        the experiment: plain numbers, JSON-able
  verdict(numbers) -> Verdict    pure: the thresholds are named constants
                                 next to it in the module
  figure(numbers, path) -> bool  optional: draw a PNG, False if nothing to draw

An experiment that cannot run here returns ``not_measurable(reason)`` (or
raises :class:`NotMeasurable`); every verdict() starts with ``unmeasurable()``
so such numbers never turn into a made-up verdict.
"""

from __future__ import annotations

from typing import Any, NamedTuple

HOLDS = "holds"
PARTLY = "partly"
DOES_NOT_HOLD = "does not hold"
NOT_MEASURABLE = "not measurable"
VERDICTS = (HOLDS, PARTLY, DOES_NOT_HOLD, NOT_MEASURABLE)


class Verdict(NamedTuple):
    verdict: str  # one of VERDICTS
    key_figure: str  # the number that decides it, with its unit
    explanation: str  # how the verdict follows from the numbers


class NotMeasurable(Exception):
    """The experiment cannot run on this machine (a model or a tool is missing)."""


def not_measurable(reason: str, **partial: Any) -> dict[str, Any]:
    return {"not_measurable": reason, **partial}


def unmeasurable(numbers: dict[str, Any]) -> Verdict | None:
    """The NOT_MEASURABLE verdict if the experiment said so, else None."""
    reason = numbers.get("not_measurable")
    if reason:
        return Verdict(NOT_MEASURABLE, "-", str(reason))
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_us(us: float | None) -> str:
    if us is None:
        return "n/a"
    if us >= 10_000:
        return f"{us / 1000:.0f} ms"
    if us >= 1000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.0f} µs"
