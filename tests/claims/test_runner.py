"""The runner never makes up a verdict: a failing or overrunning experiment is "not measurable"."""

from __future__ import annotations

import time
import types

import pytest

from iomodels.claims.base import HOLDS, NOT_MEASURABLE, Verdict, unmeasurable
from iomodels.claims.lab import Lab
from iomodels.claims.runner import run_one


def fake_claim(run) -> types.ModuleType:
    mod = types.ModuleType("fake_claim")
    mod.ID, mod.TITLE, mod.QUOTE_ZH, mod.QUOTE_EN, mod.MEASURES = "F", "fake", "假", "fake", "nothing"
    mod.BUDGET_S = (0.5, 0.5)
    mod.run = run

    def verdict(numbers):
        return unmeasurable(numbers) or Verdict(HOLDS, "1", "ran")

    mod.verdict = verdict
    return mod


@pytest.mark.timeout(10)
def test_overrun_is_not_measurable(tmp_path):
    def slow(lab, quick):
        time.sleep(5)
        return {"x": 1}

    result = run_one(fake_claim(slow), Lab(tmp_path), quick=True)
    assert result["verdict"] == NOT_MEASURABLE
    assert "time limit" in result["explanation"]
    assert result["elapsed_s"] < 2


@pytest.mark.timeout(10)
def test_failure_is_not_measurable_with_the_reason(tmp_path):
    def broken(lab, quick):
        raise OSError("no route")

    result = run_one(fake_claim(broken), Lab(tmp_path), quick=True)
    assert result["verdict"] == NOT_MEASURABLE
    assert "OSError: no route" in result["explanation"]
    assert "Traceback" in result["error"]


@pytest.mark.timeout(10)
def test_success_keeps_numbers(tmp_path):
    result = run_one(fake_claim(lambda lab, quick: {"x": 1}), Lab(tmp_path), quick=True)
    assert result["verdict"] == HOLDS
    assert result["numbers"] == {"x": 1}
