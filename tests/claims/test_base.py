"""The one rule for noise (base.py): spread, compare, against, decide."""

from __future__ import annotations

import pytest

from iomodels.claims.base import (
    DOES_NOT_HOLD,
    HOLDS,
    PARTLY,
    UNDECIDED,
    against,
    closest,
    compare,
    decide,
    spread,
    undecided_text,
)

pytestmark = pytest.mark.timeout(10)


def test_spread_is_median_and_range():
    s = spread([63, 58, None, 60])
    assert (s.median, s.lo, s.hi, s.n) == (60, 58, 63, 3)  # None dropped
    assert spread([1, 2, 3, 10]).median == 2.5
    # the spread leaves out the repeat farthest from the median (63): 58..60 of 60
    assert spread([58, 60, 63]).spread_pct == pytest.approx(100 * 2 / 60)
    assert (spread([58, 60, 63]).core_lo, spread([58, 60, 63]).core_hi) == (58, 60)
    assert spread([5, 7]).spread_pct == pytest.approx(100 * 2 / 6)  # two repeats: both count
    assert spread([58, 60, 63]).show(lambda x: f"{x:.0f}") == "60 (58..63)"
    assert spread([7]).show(lambda x: f"{x:.0f}") == "7"  # one repeat: no range to show
    assert spread([None]) is None and spread([]) is None


def test_separated_ranges_decide():
    c = compare([10, 11, 12], [20, 21, 22])
    assert c.lower == "a" and c.below is True and c.above is False
    assert c.separated and not c.narrow
    assert c.apart_pct == pytest.approx(100 * 10 / 11)


def test_overlapping_ranges_are_inside_the_noise():
    """The issue's claim 5: 58 vs 63 µs medians, but the repeats overlap."""
    c = compare([58, 60, 66], [55, 63, 65])
    assert c.lower is None and c.above is None and c.below is None
    assert not c.separated and not c.narrow
    assert "inside the noise" in c.text()
    assert c.figures() == f"{c.apart_pct:.0f} % apart, spread {c.spread_pct:.0f} %"


def test_disjoint_ranges_closer_than_the_spread_are_inside_the_noise():
    # five repeats (a full run): ranges 100..120 and 121..125 do not overlap, but the
    # medians are 12 % apart and the repeats of a spread over 17 % (19 % with 120, which
    # is left out of the spread as the repeat farthest from the median)
    c = compare([100, 101, 110, 119, 120], [121, 122, 123, 124, 125])
    assert c.lower is None
    assert "inside the noise" in c.text()
    assert compare([100, 120], [121, 122]).lower is None  # two repeats: both set the spread


def test_one_stray_repeat_on_the_far_side_does_not_hide_a_difference():
    """A --quick run here: threads 22.5, 23.7, 68.4 µs/request against epoll's ~5.5 x 1.3."""
    c = compare([22.5, 23.7, 68.4], [5.3, 5.5, 5.6], 1.3)
    assert c.above is True
    # ... but a stray repeat that crosses the other range still undoes it
    assert compare([5.0, 23.7, 68.4], [5.3, 5.5, 5.6], 1.3).above is None


def test_narrow_when_separated_by_less_than_twice_the_spread():
    c = compare([100, 102, 104, 106, 108], [109, 110, 111, 112, 113])  # 6.7 % apart, spread 5.8 %
    assert c.lower == "a"
    assert c.narrow
    assert "narrowly" in c.text()
    assert compare([1, 1, 1], [10, 11, 12]).figures() == "11x apart, spread 9 %"


def test_factor_scales_b():
    assert compare([25, 26, 27], [10, 11, 12], 2.0).above is True  # 25 > 24
    assert compare([21, 22, 23], [10, 11, 12], 2.0).above is None  # 20..24 overlaps 21..23
    assert compare([15, 16, 17], [10, 11, 12], 2.0).below is True


def test_against_a_fixed_limit():
    assert against([30, 40, 50], 25).above is True
    assert against([20, 30, 40], 25).above is None  # straddles the limit
    assert against([1, 2, 3], 25).below is True
    assert compare([], [1]) is None and against([None], 1) is None


def rule(p):
    if p["x"] and p["y"]:
        return HOLDS
    return PARTLY if p["x"] or p["y"] else DOES_NOT_HOLD


def test_decide_when_nothing_is_inside_the_noise():
    assert decide({"x": True, "y": True}, rule).verdict == HOLDS
    assert decide({"x": False, "y": True}, rule).verdict == PARTLY


def test_decide_is_undecided_when_the_verdict_hinges_on_the_noise():
    d = decide({"x": True, "y": None}, rule)
    assert d.verdict == UNDECIDED
    assert d.hinges == ["y"]
    assert set(d.could_be) == {HOLDS, PARTLY}
    text = undecided_text(d, {"y": compare([1, 2, 3], [2, 3, 4])})
    assert text.startswith("Undecided on this machine: y is inside the noise (")
    assert "holds" in text and "partly" in text


def test_decide_ignores_noise_that_cannot_change_the_verdict():
    always_partly = lambda p: PARTLY  # noqa: E731
    assert decide({"x": None, "y": None}, always_partly).verdict == PARTLY
    # y inside the noise, but x False and the rule needs both for HOLDS and either for PARTLY:
    # y decides between PARTLY and DOES_NOT_HOLD, so it hinges; with x True it would not matter for
    # DOES_NOT_HOLD
    d = decide({"x": False, "y": None}, rule)
    assert d.verdict == UNDECIDED and set(d.could_be) == {PARTLY, DOES_NOT_HOLD}


def test_closest_states_the_tightest_margin():
    far = compare([1, 1, 1], [10, 10, 10])
    near = compare([58, 60, 66], [55, 63, 65])
    assert closest(far, near, None) == near.text()
    assert closest() == ""
