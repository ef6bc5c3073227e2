"""bench/uring_dispatch.py --unit-costs prices the ring layer's pieces: keep
it running as the package changes (the figures themselves are not asserted
beyond being real)."""

import importlib.util
from pathlib import Path

from .support import needs_io_uring

pytestmark = needs_io_uring


def test_unit_costs_harness_runs():
    path = Path(__file__).resolve().parents[2] / "bench" / "uring_dispatch.py"
    spec = importlib.util.spec_from_file_location("uring_dispatch", path)
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    costs = harness.unit_costs(rounds=1)
    assert "SQE pack_into (14 fields)" in costs
    assert "io_uring_enter, empty, ctypes without argtypes" in costs
    assert all(0 < seconds < 0.001 for seconds in costs.values()), costs
