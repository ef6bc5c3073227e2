"""A real quick run of two cheap claims writes its files (loopback only)."""

from __future__ import annotations

import json
import os

import psutil
import pytest

from iomodels.claims import main
from iomodels.claims.base import VERDICTS


@pytest.mark.timeout(90)
def test_quick_run_of_claims_1_and_7(tmp_path, capsys):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
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
    left = {p.pid for p in me.children(recursive=True)} - before
    assert not left, left
    assert os.getpid() == me.pid


@pytest.mark.timeout(20)
def test_list_and_unknown(capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "select is limited" in listed
    with pytest.raises(SystemExit):
        main(["--only", "99"])
