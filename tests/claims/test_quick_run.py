"""A real quick run of two cheap claims writes its files (loopback only)."""

from __future__ import annotations

import json

import pytest

from iomodels.claims import main
from iomodels.claims.base import VERDICTS
from iomodels.harness import live_descendants


@pytest.mark.timeout(90)
def test_quick_run_of_claims_1_and_7(tmp_path, capsys):
    before = set(live_descendants())
    out = tmp_path / "report"
    assert main(["--quick", "--only", "1,7", "--out", str(out)]) == 0
    doc = json.loads((out / "claims.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in doc["results"]] == ["1", "7"]
    for r in doc["results"]:
        assert r["verdict"] in VERDICTS
        assert r["key_figure"]
        if r["verdict"] != "not measurable":
            assert r["figures"], r
            for name in r["figures"]:
                assert (out / name).stat().st_size > 0
    assert (out / "claims.html").stat().st_size > 0
    assert "claims on" in capsys.readouterr().out
    # every server stopped
    assert set(live_descendants()) - before == set()


@pytest.mark.timeout(20)
def test_list_and_unknown(capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "select is limited" in listed
    with pytest.raises(SystemExit) as info:
        main(["--only", "99"])
    assert info.value.code == 2  # a usage error, one line
    err = capsys.readouterr().err
    assert err.startswith("iomodels claims: error: unknown claim 99; choose from 1, 2,")
    assert err.count("\n") == 1
