"""A tiny misbehaving TCP server for the load generator's tests (run as a script).

    python tiny_server.py MODE

MODE:
  echo     every byte back (the reference: counts are exact against it)
  corrupt  every byte back, but the first byte of every chunk flipped
           (lengths intact, so every reply is wrong and the stream in sync)
  close    accept, then close at once (the client sees EOF or a reset)
  silent   accept and read, never answer (the client times out)

Prints the ready line of ``iomodels serve`` (``listening on 127.0.0.1:PORT
model=tiny-MODE protocol=echo``) when ready, so that iomodels.harness starts it.
On SIGTERM it writes one JSON line ``{"accepted": N, "bytes_in": N}`` on
stderr and exits 0, so a test can compare what the generator counted with
what the server saw.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import sys


def main() -> int:
    mode = sys.argv[1]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    stats = {"accepted": 0, "bytes_in": 0}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    port = listener.getsockname()[1]
    print(f"listening on 127.0.0.1:{port} model=tiny-{mode} protocol=echo", flush=True)
    while not stopping:
        try:
            events = sel.select(0.1)
        except InterruptedError:
            continue
        for key, _ in events:
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                stats["accepted"] += 1
                if mode == "close":
                    conn.close()
                    continue
                conn.setblocking(True)  # replies are small: sendall never waits long
                sel.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            stats["bytes_in"] += len(data)
            if mode == "silent":
                continue
            if mode == "corrupt":
                data = bytes([data[0] ^ 0x20]) + data[1:]
            try:
                conn.sendall(data)
            except OSError:
                sel.unregister(conn)
                conn.close()
    print(json.dumps(stats), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
