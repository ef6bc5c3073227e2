"""What every caller that runs and measures servers shares: compare, claims,
tour, bench/ and the tests.

  ServerProcess       start a server in a session of its own, pinned; read its
                      ready line; its exact CPU, memory, processes; stop it and
                      everything it forked (process.py)
  machine, versions   the one description of the machine and the code (machine.py)
  raise_nofile_limit  the open-file soft limit up to the hard limit (core.server's)
  ArgParser           argparse with the one-line usage error, exit 2 (cli.py)
"""

from iomodels.core.server import ReadyLine, parse_ready_line, raise_nofile_limit
from iomodels.harness.cli import EXIT_USAGE, ArgParser
from iomodels.harness.machine import busy_ticks, machine, versions
from iomodels.harness.process import ServerProcess, ServerStartError, session_cpu_s, session_group

__all__ = [
    "EXIT_USAGE",
    "ArgParser",
    "ReadyLine",
    "ServerProcess",
    "ServerStartError",
    "busy_ticks",
    "machine",
    "parse_ready_line",
    "raise_nofile_limit",
    "session_cpu_s",
    "session_group",
    "versions",
]
