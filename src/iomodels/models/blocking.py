"""blocking: one thread, blocking sockets, one client at a time.

Waiting for data: the only thread blocks in recv() (and, between clients, in
  accept()).  While it serves one client, the next ones wait in the kernel's
  listen backlog: their connect() succeeds (the kernel completes the
  handshake) and their bytes are buffered, but nobody reads them until the
  current client has gone.  This is the seed's first server.
Copying it: inside the same recv(): the thread sleeps through both phases,
  waiting for data and copying it kernel -> user ("blocking IO blocks in both
  phases").
What to watch when measuring: throughput with more than one client is one
  client's throughput; the second client's latency is the first client's
  whole session.  Cheapest per request for a single client: one recv() and
  one send() per request, no poller.
Facts that shaped this code: see _blocking (stopping a thread that sleeps in
  a syscall, with no poller to wake it).
"""

from __future__ import annotations

from iomodels.models._blocking import BlockingServer


class Server(BlockingServer):
    name = "blocking"

    def run(self) -> None:
        self.accept_loop(self.serve_connection)  # serve inline: the next client waits
