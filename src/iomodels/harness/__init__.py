"""What every caller that runs and measures servers shares: compare, claims,
tour, bench/ and the tests.

  ServerProcess       start a server in a session of its own, pinned; read its
                      ready line; its exact CPU, memory, processes; stop it and
                      everything it forked (process.py)
  machine, versions   the one description of the machine and the code (machine.py)
  raise_nofile_limit  the open-file soft limit up to the hard limit (core.server's)
  ArgParser           argparse with the one-line usage error, exit 2 (cli.py)

The names are imported on first use (PEP 562): `iomodels serve` needs only
ArgParser, and should not pay for subprocess, tempfile and platform at every start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "EXIT_USAGE": "iomodels.harness.cli",
    "ArgParser": "iomodels.harness.cli",
    "ReadyLine": "iomodels.core.server",
    "parse_ready_line": "iomodels.core.server",
    "raise_nofile_limit": "iomodels.core.server",
    "busy_ticks": "iomodels.harness.machine",
    "machine": "iomodels.harness.machine",
    "split_cpus": "iomodels.harness.machine",
    "versions": "iomodels.harness.machine",
    "ServerProcess": "iomodels.harness.process",
    "ServerStartError": "iomodels.harness.process",
    "session_cpu_s": "iomodels.harness.process",
    "session_group": "iomodels.harness.process",
    "live_descendants": "iomodels.harness.process",
}

__all__ = [  # == sorted(_WHERE), written out for the linters (tests/harness checks it)
    "EXIT_USAGE",
    "ArgParser",
    "ReadyLine",
    "ServerProcess",
    "ServerStartError",
    "busy_ticks",
    "live_descendants",
    "machine",
    "parse_ready_line",
    "raise_nofile_limit",
    "session_cpu_s",
    "session_group",
    "split_cpus",
    "versions",
]

if TYPE_CHECKING:
    from iomodels.core.server import ReadyLine, parse_ready_line, raise_nofile_limit
    from iomodels.harness.cli import EXIT_USAGE, ArgParser
    from iomodels.harness.machine import busy_ticks, machine, split_cpus, versions
    from iomodels.harness.process import (
        ServerProcess,
        ServerStartError,
        live_descendants,
        session_cpu_s,
        session_group,
    )


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'iomodels.harness' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
