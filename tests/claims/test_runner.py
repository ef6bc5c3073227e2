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


@pytest.mark.timeout(10)
def test_interleave_rotates_the_order_per_repeat(tmp_path):
    lab = Lab(tmp_path, repeats=3)
    order = []

    def measure(key, rep):
        order.append(key)
        return f"{key}{rep}"

    out = lab.interleave(["a", "b", "c"], measure)
    assert out == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"], "c": ["c0", "c1", "c2"]}
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # no model always first


def test_merge_keeps_every_repeat_beside_the_medians():
    from iomodels.claims.lab import merge, samples

    reps = [
        {"active": 10, "idle": 0, "status": "ok", "req_per_s": 100.0, "p99_us": 5, "srv_threads": 1},
        {"active": 10, "idle": 0, "status": "error", "reason": "OSError: boom"},
        {"active": 10, "idle": 0, "status": "ok", "req_per_s": 300.0, "p99_us": 9, "srv_threads": 1},
    ]
    row = merge(reps)
    assert row["status"] == "ok" and row["active"] == 10
    assert row["req_per_s"] == 200.0 and row["srv_threads"] == 1
    assert len(row["repeats"]) == 3 and row["repeats"][1]["reason"] == "OSError: boom"
    assert samples(row, "req_per_s") == [100.0, 300.0]
    failed = merge([reps[1], reps[1]])
    assert failed["status"] == "error" and failed["reason"] == "OSError: boom"
    assert samples(failed, "req_per_s") == []


def test_repeats_must_be_positive(tmp_path, capsys):
    from iomodels.claims.runner import main

    with pytest.raises(SystemExit) as info:
        main(["--repeats", "0", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        Lab(tmp_path, repeats=0)
