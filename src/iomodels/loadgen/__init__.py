"""The load generator: ``iomodels bench``.

Layout: engine.py is one process's epoll loop (connections, checks, errors,
open/closed loop); runner.py runs ``--workers`` of them and merges their HDR
histograms (hist.py); command.py is the command line.  ``iomodels compare``
(iomodels.compare) drives the same LoadGenerator against every model.
"""

from __future__ import annotations

from iomodels.loadgen.command import main, parse_cpus, parse_duration
from iomodels.loadgen.runner import LoadConfig, LoadGenerator

__all__ = ["LoadConfig", "LoadGenerator", "main", "parse_cpus", "parse_duration"]
