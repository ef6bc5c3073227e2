"""How the supervisor treats net.ipv4.tcp_migrate_req (never required, always said)."""

from __future__ import annotations

import logging

from iomodels import supervisor


def test_migrate_req_set_where_it_may_and_said(tmp_path, monkeypatch, caplog) -> None:
    knob = tmp_path / "tcp_migrate_req"
    monkeypatch.setattr(supervisor, "MIGRATE_REQ", str(knob))
    caplog.set_level(logging.INFO, logger="iomodels")

    knob.write_text("0\n")
    supervisor._enable_migrate_req()
    assert knob.read_text() == "1"
    assert "set net.ipv4.tcp_migrate_req=1 (was 0)" in caplog.text

    caplog.clear()
    supervisor._enable_migrate_req()
    assert "net.ipv4.tcp_migrate_req=1: a retiring worker's queued connections move on" in caplog.text

    caplog.clear()
    monkeypatch.setattr(supervisor, "MIGRATE_REQ", str(tmp_path / "absent" / "tcp_migrate_req"))
    supervisor._enable_migrate_req()
    assert "Linux < 5.14" in caplog.text and "--shared-listener avoids that" in caplog.text


def test_migrate_req_that_cannot_be_set_is_a_warning_not_an_error(tmp_path, monkeypatch, caplog) -> None:
    knob = tmp_path / "tcp_migrate_req"
    knob.write_text("0\n")
    monkeypatch.setattr(supervisor, "MIGRATE_REQ", str(knob))
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if str(path) == str(knob) and "w" in mode:
            raise PermissionError(13, "Permission denied")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    caplog.set_level(logging.INFO, logger="iomodels")
    supervisor._enable_migrate_req()
    assert knob.read_text() == "0\n"
    assert "cannot be set (not permitted)" in caplog.text
    assert "sysctl -w net.ipv4.tcp_migrate_req=1" in caplog.text
