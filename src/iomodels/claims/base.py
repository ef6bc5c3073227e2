"""What a claim is, and the four verdicts.

A claim module (``c01_blocking.py`` ...) defines, at module level:

  ID          "1", "2", ... the issue's numbering
  TITLE       a few words for the table
  QUOTE_ZH    the sentence it checks, copied exactly from the seed
  QUOTE_EN    the same in English
  MEASURES    one line: what the experiment measures
  run(lab, quick) -> dict        the experiment: plain numbers, JSON-able
  verdict(numbers) -> Verdict    pure: the thresholds are named constants
                                 next to it in the module; decided on the
                                 repeats with the rule below (compare, against,
                                 decide), never on one measurement
  figure(numbers, path) -> bool  optional: draw a PNG, False if nothing to draw

An experiment that cannot run here returns ``not_measurable(reason)`` (or
raises :class:`NotMeasurable`); every verdict() starts with ``unmeasurable()``
so such numbers never turn into a made-up verdict.

The rule for noise, in one place (issue 13: two runs of the same commit gave
two answers, from one measurement each).  An experiment repeats, interleaved
across the models it compares (``Lab.interleave``), and keeps every repeat.
A verdict reads the repeats' median and their spread, min..max:

  a difference smaller than the measured spread is not a difference.

``compare(a, b, factor)`` says "a is below (above) factor x b" only when
every repeat of a is below (above) every repeat of factor x b (the ranges do
not overlap) *and* the medians are at least as far apart as the larger
relative spread.  The spread leaves out the one repeat farthest from the
median: a single stray repeat (a burst from another tenant) already has to
stay clear of the other range, and on the far side it only makes the
difference larger, so it should not also set the margin (a --quick run here:
threads at 22.5, 23.7 and 68.4 µs/request against epoll's 5.5 came out
"inside the noise" when it did).  Otherwise they "cannot be told apart".  ``against(samples, limit)``
does the same with a fixed limit.  Each is three-valued: True, False, or
None for "inside the noise".  ``decide`` turns a claim's parts into its
verdict: a part inside the noise is tried both ways, and if the verdict
depends on it the claim is UNDECIDED on this machine, with the comparison it
hinges on, instead of whichever way this run's noise fell.  A comparison that
separates, but by less than twice the spread, is marked "narrowly".
"""

from __future__ import annotations

from typing import Any, NamedTuple

HOLDS = "holds"
PARTLY = "partly"
DOES_NOT_HOLD = "does not hold"
UNDECIDED = "undecided"  # the verdict hinges on a comparison inside this machine's noise
NOT_MEASURABLE = "not measurable"
VERDICTS = (HOLDS, PARTLY, DOES_NOT_HOLD, UNDECIDED, NOT_MEASURABLE)


class Verdict(NamedTuple):
    verdict: str  # one of VERDICTS
    key_figure: str  # the number that decides it, with its unit
    explanation: str  # how the verdict follows from the numbers
    margin: str = ""  # the closest comparison it rests on: "3 % apart, spread 9 %"


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


# ----------------------------------------------------------------------
# repeats: median, spread, and the one rule that compares them


class Spread(NamedTuple):
    """Repeats of one figure: their median, range, and core range (see spread())."""

    median: float
    lo: float
    hi: float
    n: int
    core_lo: float  # the range without the one repeat farthest from the median
    core_hi: float

    @property
    def spread_pct(self) -> float:
        """(core max - core min) / median, in %: how far this machine's repeats disagree,
        one stray repeat aside (it still counts in lo..hi, which must not overlap)."""
        return 100.0 * (self.core_hi - self.core_lo) / abs(self.median) if self.median else 0.0

    def scaled(self, factor: float) -> Spread:
        return Spread(*(x * factor for x in (self.median, self.lo, self.hi)), self.n,
                      self.core_lo * factor, self.core_hi * factor)  # fmt: skip

    def show(self, fmt=lambda x: f"{x:.3g}") -> str:
        """ "58 µs (55..63)": the median and, when repeats disagree, the range."""
        if self.n > 1 and self.lo != self.hi:
            return f"{fmt(self.median)} ({fmt(self.lo)}..{fmt(self.hi)})"
        return fmt(self.median)


def spread(samples) -> Spread | None:
    """Median and min..max of the repeats (None values dropped); None if none is left."""
    vals = sorted(float(x) for x in samples if x is not None)
    if not vals:
        return None
    n = len(vals)
    mid = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    core = vals
    if n >= 3:  # drop the repeat farthest from the median: a burst from another tenant
        core = vals[1:] if mid - vals[0] > vals[-1] - mid else vals[:-1]
    return Spread(mid, vals[0], vals[-1], n, core[0], core[-1])


def median(samples) -> float | None:
    s = spread(samples)
    return None if s is None else s.median


class Comparison(NamedTuple):
    """a against factor x b, over repeats."""

    a: Spread
    b: Spread  # already scaled by the factor
    factor: float
    lower: str | None  # "a" or "b" when the ranges separate them, None inside the noise
    apart_pct: float  # the medians' distance, % of the smaller
    spread_pct: float  # the larger of the two relative spreads, %

    @property
    def separated(self) -> bool:
        return self.lower is not None

    @property
    def narrow(self) -> bool:
        """Separated, but by less than twice the spread: a worse day could undo it."""
        return self.separated and self.apart_pct < 2 * self.spread_pct

    @property
    def above(self) -> bool | None:
        """Is a above factor x b?  None: they cannot be told apart."""
        return None if self.lower is None else self.lower == "b"

    @property
    def below(self) -> bool | None:
        return None if self.lower is None else self.lower == "a"

    def figures(self) -> str:
        """'3 % apart, spread 9 %' ('12x apart' beyond 100 %)."""
        apart = f"{1 + self.apart_pct / 100:.3g}x" if self.apart_pct >= 100 else f"{self.apart_pct:.0f} %"
        return f"{apart} apart, spread {self.spread_pct:.0f} %"

    def text(self) -> str:
        """'3 % apart, spread 9 % (inside the noise)': the figures and what they mean."""
        what = "narrowly" if self.narrow else "separated" if self.separated else "inside the noise"
        return f"{self.figures()} ({what})"


def compare(a_samples, b_samples, factor: float = 1.0) -> Comparison | None:
    """Which of a and factor x b is lower, by how much, and whether the spreads separate them.

    Separated means every repeat of one is below every repeat of the other
    (the min..max ranges do not overlap) and the medians are at least the
    larger relative spread apart.  None when either has no sample."""
    a, b0 = spread(a_samples), spread(b_samples)
    if a is None or b0 is None:
        return None
    b = b0.scaled(factor)
    if a.hi < b.lo:
        lower: str | None = "a"
    elif b.hi < a.lo:
        lower = "b"
    else:
        lower = None
    small = min(abs(a.median), abs(b.median))
    apart = 100.0 * abs(a.median - b.median) / small if small else 0.0
    noise = max(a.spread_pct, b.spread_pct)
    if apart < noise:  # a difference smaller than the measured spread is not a difference
        lower = None
    return Comparison(a, b, factor, lower, apart, noise)


def against(samples, limit: float) -> Comparison | None:
    """``compare`` with a fixed limit (a spread of zero)."""
    return compare(samples, [limit])


def above(c: Comparison | None) -> bool | None:
    return None if c is None else c.above


def below(c: Comparison | None) -> bool | None:
    return None if c is None else c.below


class Decision(NamedTuple):
    verdict: str  # UNDECIDED when it hinges on a part inside the noise
    hinges: list[str]  # the parts inside the noise that would change it
    could_be: list[str]  # the verdicts those parts allow


def decide(parts: dict[str, bool | None], rule) -> Decision:
    """Apply ``rule(parts) -> verdict`` with every part inside the noise (None) tried
    both ways.  One verdict for every way: that verdict.  Several: UNDECIDED, with
    the parts it hinges on."""
    unknown = [k for k, v in parts.items() if v is None]
    outcomes: dict[str, None] = {}
    for bits in range(2 ** len(unknown)):
        trial = dict(parts)
        for i, k in enumerate(unknown):
            trial[k] = bool(bits >> i & 1)
        outcomes[rule(trial)] = None
    could_be = sorted(outcomes, key=lambda v: VERDICTS.index(v) if v in VERDICTS else len(VERDICTS))
    if len(outcomes) == 1:
        return Decision(could_be[0], [], could_be)
    hinges = []
    for k in unknown:  # the unknown parts whose value alone changes the outcome somewhere
        for bits in range(2 ** len(unknown)):
            trial = dict(parts)
            for i, u in enumerate(unknown):
                trial[u] = bool(bits >> i & 1)
            flipped = {**trial, k: not trial[k]}
            if rule(trial) != rule(flipped):
                hinges.append(k)
                break
    return Decision(UNDECIDED, hinges, could_be)


def undecided_text(d: Decision, notes: dict[str, Comparison | None]) -> str:
    """'Undecided on this machine: X is inside the noise (...). Depending on it, ... holds or partly.'"""

    def note(k: str) -> str:
        c = notes.get(k)
        return f" ({c.figures()})" if c is not None else ""

    why = "; ".join(f"{k} is inside the noise{note(k)}" for k in d.hinges)
    could = ", ".join(d.could_be[:-1]) + f" or {d.could_be[-1]}" if len(d.could_be) > 1 else d.could_be[0]
    return f"Undecided on this machine: {why}. Depending on it, the verdict would be {could}."


def closest(*comparisons: Comparison | None) -> str:
    """The margin a verdict states: the tightest of its comparisons (smallest distance
    over spread), as text."""
    cs = [c for c in comparisons if c is not None]
    if not cs:
        return ""

    def tightness(c: Comparison) -> float:
        return c.apart_pct / c.spread_pct if c.spread_pct else float("inf")

    return min(cs, key=tightness).text()
