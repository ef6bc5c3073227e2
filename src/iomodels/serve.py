"""``iomodels serve``: one model's server, from its configuration to its exit.

Not in core/server.py, to keep the imports one-way: the model registry
(models/__init__.py) imports core.server for BaseServer, and run() needs the
registry.  So models -> core.server, and serve -> models, protocols,
core.server; nothing imports serve but the CLI and the supervisor, whose
workers (``--workers N``, supervisor.py) each build and serve a server here.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable

from iomodels import models, protocols
from iomodels.core.server import (
    BaseServer,
    ServerConfig,
    ServerState,
    make_listener,
    raise_nofile_limit,
    ready_line,
)

log = logging.getLogger("iomodels")


def run(config: ServerConfig) -> int:
    """Serve until stopped; the CLI's ``serve``.  Raises IOModelsError for bad input.

    ``config.workers`` > 0: this process becomes the supervisor of that many
    worker processes (supervisor.py); 0: it serves itself, as always."""
    if config.workers > 0:
        from iomodels.supervisor import Supervisor

        return Supervisor(config).run()
    server_cls, state, protocol_factory = prepare(config)
    limit = raise_nofile_limit()
    listener = make_listener(config.host, config.port, config.backlog)

    def announce() -> None:
        sys.stdout.write(ready_line(listener, config.model, config.protocol) + "\n")
        sys.stdout.flush()
        log.info("model=%s protocol=%s open-file limit=%d", config.model, config.protocol, limit)

    return serve(server_cls(config, protocol_factory, listener, announce, state), listener)


def prepare(config: ServerConfig) -> tuple[type[BaseServer], ServerState, Callable]:
    """The model's server class, the shared state and the protocol factory:
    everything but the socket.  Raises IOModelsError (unknown or unavailable
    model, a protocol that does not load)."""
    server_cls = models.get(config.model)  # raises UnknownModel / ModelUnavailable
    state = ServerState(config.model, config.protocol)
    protocol_factory = protocols.resolve(config.protocol, state, config)  # raises IOModelsError
    return server_cls, state, protocol_factory


def serve(server: BaseServer, listener: socket.socket) -> int:
    """Run ``server`` until it stops; close ``listener`` (its own); 0."""
    try:
        server.serve_forever()
    finally:
        listener.close()
        # The offload workers are the last threads the stop joins, within its
        # budget (core/server.py).  One still running then (a protocol's
        # long job) would hold the interpreter's exit, which joins the
        # executor's threads: the process leaves without it.
        deadline = server.stop_deadline if server.stop_started is not None else None
        stuck = server.workers.shutdown(deadline)
    if stuck:
        log.warning("%d offload worker(s) still busy at the stop deadline: exiting without them", stuck)
        sys.stdout.flush()
        os._exit(0)
    log.info("stopped")
    return 0
