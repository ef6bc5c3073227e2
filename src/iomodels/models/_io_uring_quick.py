"""The io_uring model's quick sends: what is in flight, and when it has settled.

A quick send is a send with MSG_DONTWAIT (the kernel fails it with -EAGAIN
rather than park it), MSG_WAITALL (a short send is a failure whose res is
the count sent) and IOSQE_CQE_SKIP_SUCCESS (no completion when it all went
out): one CQE per request instead of two.  The kernel runs it inside the
enter that submits it, so when that enter returns the bytes are sent, or
its failure CQE is in the batch the enter reaped.

Each quick send goes through four states, by user_data (one quick send per
connection at a time; the value is (the connection's SQE template, the bytes)):

    staged      written by the protocol since the last enter (``stage``, or
                inlined in Connection.write, the hot path)
    queued      written into the SQ just before the enter (``queue``): one
                loop over the turn's replies, no call per send
    settling    submitted by the last enter; its failure CQE, if any, is in
                the batch being dispatched (``begin_batch``)
    settled     that batch is dispatched (``end_batch``): it went whole, or
                its failure turned it into an ordinary send

A connection knows whether its last quick send has settled from a stamp:
``batch`` when it was staged.  It has settled once ``settled`` is past it
(``pending(stamp)``): a compare, no lookup, on the write path.  Until then a
write is buffered and a close waits, so bytes stay in order and the fd stays
open until the SQE naming it was submitted: the connection asks to be told
(``wait_for_settle``), and ``end_batch`` calls its ``_settle()``.  A success
is silent, so while a connection waits (``waiting``) the loop's enter must
not wait for a completion: none may come.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Staged = tuple[bytes, bytes]  # (the connection's SQE template, the bytes)
_EMPTY: dict[int, Staged] = {}  # queued / settling when there is none: never written to


class QuickSends:
    """The quick sends of one ring, from staged to settled (see the module docstring)."""

    __slots__ = ("staged", "queued", "settling", "batch", "settled", "waiting")

    def __init__(self) -> None:
        self.staged: dict[int, Staged] = {}  # user_data -> staged since the last enter
        self.queued: dict[int, Staged] = _EMPTY  # in the SQ, the enter to come
        self.settling: dict[int, Staged] = _EMPTY  # submitted by the last enter
        self.batch = 0  # numbers the batches of completions: the stamp of what is staged now
        self.settled = 0  # a quick send stamped k has settled once settled > k
        self.waiting: list[Any] = []  # connections to _settle() after this batch

    def __len__(self) -> int:
        """How many are staged for the next enter (``if quick:`` before an enter)."""
        return len(self.staged)

    # ---- a connection's side

    def stage(self, user_data: int, template: bytes, data: bytes) -> int:
        """Stage a quick send; returns its stamp.  (Connection.write inlines this.)"""
        self.staged[user_data] = (template, data)
        return self.batch

    def pending(self, stamp: int) -> bool:
        """The quick send stamped ``stamp`` has not settled yet."""
        return stamp >= self.settled

    def wait_for_settle(self, conn: Any) -> None:
        """Call ``conn._settle()`` once this batch is dispatched."""
        self.waiting.append(conn)

    def in_flight_bytes(self, user_data: int) -> int:
        """The bytes of this connection's quick send not known to be sent."""
        staged = self.staged.get(user_data) or self.queued.get(user_data) or self.settling.get(user_data)
        return len(staged[1]) if staged else 0

    def take_failed(self, user_data: int) -> bytes | None:
        """A failure CQE came for this quick send: its bytes (None if unknown)."""
        staged = self.settling.pop(user_data, None)
        return staged[1] if staged else None

    # ---- the loop's side, once per turn

    def queue(self, prep_quick_sends: Callable[[Iterable[Staged]], None]) -> None:
        """Just before an enter: write the staged quick sends into the SQ
        (Ring.prep_quick_sends).  They move to ``queued``, so that nothing
        queues them twice: an enter that fails before submitting leaves them
        in the SQ, for the next one."""
        staged = self.staged
        prep_quick_sends(staged.values())
        if self.queued is _EMPTY:
            self.queued = staged
        else:
            self.queued.update(staged)
        self.staged = {}

    def begin_batch(self) -> None:
        """An enter returned: what it submitted is settling until its batch is dispatched."""
        self.settling = self.queued
        self.queued = _EMPTY
        self.batch += 1

    def end_batch(self) -> None:
        """The batch is dispatched: what was settling has settled; tell the
        connections that waited (a newer quick send of theirs makes them
        wait again, for the next batch)."""
        self.settling = _EMPTY
        self.settled = self.batch
        if self.waiting:
            waiting = self.waiting
            self.waiting = []
            for conn in waiting:
                conn._settle()

    @property
    def unsubmitted(self) -> bool:
        """Staged or queued: an enter must still submit them."""
        return bool(self.staged) or bool(self.queued)
