"""The claims, in the issue's order.  A module listed here is a claim (see base.py)."""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = [
    "c01_blocking",
    "c02_thread_resources",
    "c03_pool",
    "c04_busy_polling",
    "c05_syscalls",
    "c06_few_connections",
    "c07_select_limit",
    "c08_poll_memory",
    "c09_scan_cost",
    "c10_heavy_request",
    "c11a_sigio",
    "c11b_async",
    "c12_async_best",
    "d_diagrams",
]


def claims() -> list[ModuleType]:
    """Every claim module that exists yet, in order."""
    out = []
    for name in MODULES:
        try:
            out.append(importlib.import_module(f"iomodels.claims.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"iomodels.claims.{name}":
                raise
    return out


def by_id() -> dict[str, ModuleType]:
    return {m.ID: m for m in claims()}
