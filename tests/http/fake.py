"""A fake transport for the sans-IO tests of the http protocol: it records
writes, pauses, timers and closes, and sends nothing anywhere."""

from __future__ import annotations

from iomodels.core.protocol import HIGH_WATER


class FakeTransport:
    def __init__(self, high_water: int = HIGH_WATER) -> None:
        self.written = bytearray()
        self.writes = 0
        self.closed = False
        self.paused = False
        self.timeouts: list[float | None] = []
        self.high_water = high_water
        self.hold = False  # keep written bytes "in the kernel buffer" (back-pressure)
        self.protocol = None

    def write(self, data) -> None:
        assert not self.closed, "write after close"
        self.written += data
        self.writes += 1
        if self.hold and len(self.written) > self.high_water and self.protocol is not None:
            self.protocol.pause_writing()

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name, default=None):
        return default

    def get_write_buffer_size(self) -> int:
        return len(self.written) if self.hold else 0

    def set_idle_timeout(self, seconds: float | None) -> None:
        self.timeouts.append(seconds)

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data
