"""Odd servers for the harness tests, run as ``python fake_server.py MODE``.

Each one that gets ready prints a proper ready line on a real listening
socket, then misbehaves in the way its MODE names.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

MODE = sys.argv[1]
BURN_S = 0.4  # CPU seconds the "burn" child uses


def ready(listener: socket.socket) -> None:
    host, port = listener.getsockname()[:2]
    sys.stdout.write(f"listening on {host}:{port} model=fake-{MODE} protocol=echo\n")
    sys.stdout.flush()


def tell_child() -> None:
    """The child says it is in place (the test waits for this line on stderr)."""
    os.write(2, f"child {os.getpid()}\n".encode())


def listen() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


if MODE == "exit":  # dies before it is ready, saying why on stderr
    sys.stderr.write("fake: cannot start, on purpose\n")
    sys.exit(3)
elif MODE == "silent":  # never ready
    time.sleep(60)
elif MODE == "garbage":  # prints something that is not a ready line
    print("hello there", flush=True)
    time.sleep(60)
elif MODE == "stubborn":  # ignores SIGTERM; its child too, and the child leaves the group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    listener = listen()
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)  # its own group, same session: killpg of the server's group misses it
        tell_child()
        time.sleep(60)
        os._exit(0)
    ready(listener)
    time.sleep(60)
elif MODE == "forks":  # a child that ignores SIGTERM, in the server's group
    listener = listen()
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        tell_child()
        time.sleep(60)
        os._exit(0)
    ready(listener)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(60)
elif MODE == "burn":  # a child that burns BURN_S of CPU and is reaped: only cutime sees it
    listener = listen()
    ready(listener)
    child = os.fork()
    if child == 0:
        start = time.process_time()
        while time.process_time() - start < BURN_S:
            pass
        os._exit(0)
    os.waitpid(child, 0)
    sys.stderr.write("burnt\n")
    sys.stderr.flush()
    time.sleep(60)
else:
    raise SystemExit(f"unknown mode {MODE}")
