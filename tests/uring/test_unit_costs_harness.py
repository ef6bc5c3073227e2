"""bench/uring_dispatch.py's modes that tests/models does not run (--unit-costs,
--cold-mib, --pool-cycle): keep them running as the package changes (the
figures themselves are not asserted beyond being real)."""

import importlib.util
from pathlib import Path

from .support import needs_io_uring

pytestmark = needs_io_uring


def _harness():
    path = Path(__file__).resolve().parents[2] / "bench" / "uring_dispatch.py"
    spec = importlib.util.spec_from_file_location("uring_dispatch", path)
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    return harness


def test_unit_costs_harness_runs():
    costs = _harness().unit_costs(rounds=1)
    assert "SQE pack_into (14 fields)" in costs
    assert "io_uring_enter, empty, ctypes without argtypes" in costs
    assert all(0 < seconds < 0.001 for seconds in costs.values()), costs


def test_cold_cache_harness_runs():
    per_request = _harness().measure("plain", 4, 3, 20, 100, cold_mib=1, pool_cycle=4)
    assert 0 < per_request < 0.01  # seconds: a real figure, not a hang or a zero
