"""A plain asyncio echo server, nothing of iomodels in it: the outside
reference that `iomodels bench` is checked against (bench/crosscheck.py).

Usage: python bench/asyncio_echo.py PORT
Prints the ready line of `iomodels serve`, so that iomodels.harness can start it:
"listening on 127.0.0.1:PORT model=asyncio-plain protocol=echo".
"""

import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port} model=asyncio-plain protocol=echo", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
