"""The seed's interactive client, made correct.

Each line of stdin is sent as it is typed; replies are printed as they arrive
(a reader thread, so a reply that comes in pieces, or late, is never lost).
At the end of stdin the client half-closes (shutdown SHUT_WR), prints every
reply until the server closes, and exits 0.  The same code serves a terminal
and a pipe: ``printf 'hello\\nstraße\\n' | iomodels client``.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import BinaryIO

CONNECT_TIMEOUT_S = 10.0


class ClientError(Exception):
    """A one-line, user-facing failure (exit status 1)."""


def _pump_replies(sock: socket.socket, out: BinaryIO, errors: list[BaseException]) -> None:
    try:
        while True:
            data = sock.recv(64 * 1024)
            if not data:
                return
            out.write(data)
            out.flush()
    except OSError as exc:
        errors.append(exc)


def run(host: str, port: int, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Talk to the server until both directions are done; raise ClientError on failure."""
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise ClientError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    errors: list[BaseException] = []
    with sock:
        sock.settimeout(None)
        reader = threading.Thread(target=_pump_replies, args=(sock, stdout, errors), daemon=True)
        reader.start()
        try:
            while line := stdin.readline():
                sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            errors.append(exc)
        reader.join()
    if errors:
        exc = errors[0]
        raise ClientError(f"connection to {host}:{port} failed: {getattr(exc, 'strerror', None) or exc}")


def main(host: str, port: int) -> int:
    try:
        run(host, port, sys.stdin.buffer, sys.stdout.buffer)
    except ClientError as exc:
        sys.stderr.write(f"iomodels client: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
