"""Memory handed to the kernel: buffer addresses, and the provided-buffer ring.

A buffer given to an SQE must stay alive, and must not move, until that
operation's final completion has been reaped: the kernel reads or writes it
asynchronously.  :func:`buffer_span` takes a buffer's address and returns
the object that keeps it so (the ring holds it, keyed by ``user_data``);
:data:`GRAVEYARD` keeps, forever, what a closed ring could not prove free.

:class:`BufferRing` is the other way to give the kernel memory for
receives: a pool it picks from itself (``IOSQE_BUFFER_SELECT``), which is
what lets one multishot recv serve a connection for its whole life.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable
from typing import TYPE_CHECKING

from .abi import (
    BUF,
    BUF_RING_TAIL_OFF,
    BUF_SIZE,
    BYTES_OFF,
    IORING_REGISTER_PBUF_RING,
    IORING_UNREGISTER_PBUF_RING,
    BufReg,
)

if TYPE_CHECKING:
    from .ring import Ring

# Buffers whose ring was closed while the kernel might still use them: kept
# forever rather than freed under the kernel's feet.
GRAVEYARD: list = []

_c_char_from_buffer = ctypes.c_char.from_buffer


def _buffer_address(buf, writable: bool):
    """Return (address, length, keeper) for a buffer handed to the kernel.

    ``keeper`` is what the ring holds until the completion: for writable
    buffers a ctypes view made with ``from_buffer``, which also *exports* the
    buffer, so a bytearray cannot be resized (moved) while the kernel may
    write into it.  A read-only buffer that is not ``bytes`` is copied.
    """
    if type(buf) is bytes and not writable and BYTES_OFF is not None:
        return id(buf) + BYTES_OFF, len(buf), buf
    if type(buf) is bytearray and buf:
        # The common case, fast path: a 1-byte view at offset 0 is enough
        # to take the address and to hold the export.
        keeper = _c_char_from_buffer(buf)
        return ctypes.addressof(keeper), len(buf), keeper
    if isinstance(buf, ctypes.Array):
        return ctypes.addressof(buf), ctypes.sizeof(buf), buf
    try:
        keeper = (ctypes.c_char * memoryview(buf).nbytes).from_buffer(buf)
    except TypeError as exc:
        if writable:
            raise TypeError("recv needs a writable, contiguous buffer") from exc
        data = bytes(buf)
        return _buffer_address(data, False)
    return ctypes.addressof(keeper), len(keeper), keeper


def buffer_span(buf, writable: bool, offset: int, nbytes: int | None):
    """``(address, nbytes, keeper)`` of ``buf[offset:offset + nbytes]``
    (``nbytes=None``: to the end); ``keeper`` as for :func:`_buffer_address`."""
    addr, size, keeper = _buffer_address(buf, writable)
    if nbytes is None:
        nbytes = size - offset
    if offset < 0 or nbytes < 0 or offset + nbytes > size:
        raise ValueError("offset/nbytes outside the buffer")
    return addr + offset, nbytes, keeper


class BufferRing:
    """A provided-buffer ring (IORING_REGISTER_PBUF_RING, kernel 5.19+).

    ``count`` buffers of ``size`` bytes in one anonymous mapping, offered to
    the kernel under buffer group ``bgid``.  A recv with buffer selection
    takes one; its CQE says which (``bid``).  Read the data with
    ``view(bid, res)``, then ``recycle(bid)`` to give it back.  The ring of
    descriptors is page-aligned anonymous memory, as the kernel requires.
    """

    def __init__(self, ring: Ring, bgid: int, count: int, size: int) -> None:
        if count < 1 or count & (count - 1) or count > 32768:
            raise ValueError("count must be a power of two <= 32768")
        self.ring = ring
        self.bgid = bgid
        self.count = count
        self.size = size
        self._mask = count - 1
        self._closed = True
        self._ring_mem = mmap.mmap(-1, max(count * BUF_SIZE, mmap.PAGESIZE))
        self._data = mmap.mmap(-1, count * size)
        self._ring_view = memoryview(self._ring_mem)
        self._ring_anchor = ctypes.c_char.from_buffer(self._ring_mem)
        self._data_anchor = ctypes.c_char.from_buffer(self._data)
        self._data_addr = ctypes.addressof(self._data_anchor)
        self._tail16 = self._ring_view[BUF_RING_TAIL_OFF : BUF_RING_TAIL_OFF + 2].cast("H")
        reg = BufReg(ring_addr=ctypes.addressof(self._ring_anchor), ring_entries=count, bgid=bgid)
        try:
            ring.register(IORING_REGISTER_PBUF_RING, ctypes.byref(reg), 1)
        except BaseException:
            self._release()
            raise
        self._closed = False
        self._tail = 0
        self._slot_bids = [-1] * count  # the bid each ring entry names (the kernel only reads them)
        for bid in range(count):
            self._put(bid)
        self._tail16[0] = self._tail

    def _put(self, bid: int) -> None:
        # Write addr/len/bid only: entry 0's last u16 is the shared tail.
        i = self._tail & self._mask
        BUF.pack_into(self._ring_view, i * BUF_SIZE, self._data_addr + bid * self.size, self.size, bid)
        self._slot_bids[i] = bid
        self._tail = (self._tail + 1) & 0xFFFF

    def recycle(self, bid: int) -> None:
        """Give buffer ``bid`` back to the kernel (publishes the tail)."""
        self._put(bid)
        self._tail16[0] = self._tail

    @property
    def memory(self) -> mmap.mmap:
        """The pool's memory: buffer ``bid`` is ``[bid * size, (bid + 1) * size)``.
        Slicing it copies the bytes out (what a transport hands its protocol)."""
        return self._data

    def batch_recycler(self) -> tuple[Callable[[int], None], Callable[[], None]]:
        """``(note, flush)`` for an event loop: ``note(bid)`` only records a
        used buffer (a list append, no Python frame); ``flush()``, once per
        loop turn before the enter, puts them all back and publishes the tail
        once, where :meth:`recycle` costs two Python frames per buffer (see
        BENCHMARKS.md, section "The ring layer's unit costs").

        The kernel takes buffers in ring order, so a loop that gives each
        back as soon as it has copied it out returns them in the order they
        were taken: the ring slots they go back to already describe exactly
        those buffers.  ``flush`` checks that with one list comparison and
        then only moves the tail (no entry rewritten); any other order is
        written entry by entry."""
        used: list[int] = []
        put, view, mask = BUF.pack_into, self._ring_view, self._mask
        base, size, tail16, count = self._data_addr, self.size, self._tail16, self.count
        slots = self._slot_bids  # which bid each ring entry names now

        def flush() -> None:
            tail = self._tail
            n = len(used)
            start = tail & mask
            if start + n > count or slots[start : start + n] != used:
                for bid in used:
                    i = tail & mask
                    if slots[i] != bid:
                        put(view, i * BUF_SIZE, base + bid * size, size, bid)
                        slots[i] = bid
                    tail = (tail + 1) & 0xFFFF
            else:
                tail = (tail + n) & 0xFFFF
            self._tail = tail
            tail16[0] = tail  # publish: the kernel may use them from now on
            used.clear()

        return used.append, flush

    def view(self, bid: int, nbytes: int) -> memoryview:
        """The first ``nbytes`` of buffer ``bid`` (valid until recycled).

        Release the view (``view.release()``) before ``close()``: an
        exported view keeps the mapping from being unmapped.
        """
        start = bid * self.size
        return memoryview(self._data)[start : start + nbytes]

    def _release(self) -> None:
        self._tail16.release()
        self._ring_view.release()
        del self._ring_anchor, self._data_anchor
        self._ring_mem.close()
        self._data.close()

    def close(self) -> None:
        """Unregister the group (when the ring is still open) and unmap.

        Only close once no recv that selects from this group is in flight.
        """
        if self._closed:
            return
        self._closed = True
        if not self.ring.closed:
            reg = BufReg(bgid=self.bgid)
            try:
                self.ring.register(IORING_UNREGISTER_PBUF_RING, ctypes.byref(reg), 1)
            except OSError:
                pass
        self._release()

    def __enter__(self) -> BufferRing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
