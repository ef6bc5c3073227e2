"""kqueue: unavailable on Linux with its reason; its poller's translation is
checked everywhere against a fake kqueue (the real one runs on BSD/macOS)."""

import select
from types import SimpleNamespace

import pytest

from iomodels import models
from iomodels.models._readiness import ERROR, READ, WRITE

KQ = dict(
    KQ_FILTER_READ=-1, KQ_FILTER_WRITE=-2, KQ_EV_ADD=1, KQ_EV_DELETE=2, KQ_EV_ERROR=0x4000, KQ_EV_EOF=0x8000
)


@pytest.mark.skipif(hasattr(select, "kqueue"), reason="this platform has kqueue")
def test_unavailable_with_reason():
    ok, reason = models.available("kqueue")
    assert not ok
    assert "kqueue" in reason, reason


class FakeKqueue:
    def __init__(self) -> None:
        self.changes: list[tuple[int, int, int]] = []
        self.events: list[SimpleNamespace] = []
        self.max_events: list[int] = []

    def control(self, changes, max_events, timeout=None):
        if changes:
            self.changes.extend((kev.ident, kev.filter, kev.flags) for kev in changes)
        self.max_events.append(max_events)
        return self.events if max_events else []

    def close(self) -> None:
        pass


@pytest.fixture
def fake_kqueue(monkeypatch):
    fake = FakeKqueue()
    for name, value in KQ.items():
        monkeypatch.setattr(select, name, value, raising=False)
    monkeypatch.setattr(select, "kqueue", lambda: fake, raising=False)
    monkeypatch.setattr(
        select,
        "kevent",
        lambda ident, filter, flags: SimpleNamespace(ident=ident, filter=filter, flags=flags),
        raising=False,
    )
    return fake


def test_interest_changes(fake_kqueue):
    from iomodels.models.kqueue import KqueuePoller

    poller = KqueuePoller()
    poller.register(5, READ)
    poller.modify(5, READ | WRITE)
    poller.modify(5, WRITE)
    poller.unregister(5)
    r, w, add, delete = KQ["KQ_FILTER_READ"], KQ["KQ_FILTER_WRITE"], KQ["KQ_EV_ADD"], KQ["KQ_EV_DELETE"]
    assert fake_kqueue.changes == [(5, r, add), (5, w, add), (5, r, delete), (5, w, delete)]


def test_events_are_translated(fake_kqueue):
    from iomodels.models.kqueue import KqueuePoller

    poller = KqueuePoller()
    poller.register(5, READ | WRITE)
    poller.register(6, READ)
    fake_kqueue.events = [
        SimpleNamespace(ident=5, filter=KQ["KQ_FILTER_READ"], flags=KQ["KQ_EV_EOF"]),
        SimpleNamespace(ident=5, filter=KQ["KQ_FILTER_WRITE"], flags=0),
        SimpleNamespace(ident=6, filter=KQ["KQ_FILTER_READ"], flags=KQ["KQ_EV_ERROR"]),
    ]
    assert poller.wait(0) == [(5, READ), (5, WRITE), (6, READ | ERROR)]
    assert fake_kqueue.max_events[-1] == 4  # two filters per registered fd
