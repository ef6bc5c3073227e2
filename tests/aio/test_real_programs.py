"""Real asyncio programs, unmodified, on UringEventLoop: an aiohttp server
and client, uvicorn serving a plain ASGI app, a websockets echo.  Each is
served under concurrent load and every answer is checked.

aiohttp, uvicorn and websockets are not dependencies of this project: each
test is skipped, saying so, where its library is not installed
(``pip install aiohttp uvicorn websockets``).
"""

from __future__ import annotations

import asyncio

import pytest

from iomodels import aio

ok, why = aio.available()
if not ok:
    pytest.skip(why, allow_module_level=True)

CLIENTS = 20
ROUNDS = 10


def run(main):
    with asyncio.Runner(loop_factory=aio.UringEventLoop) as runner:
        assert isinstance(runner.get_loop(), aio.UringEventLoop)
        return runner.run(main())


def run_installed(main):
    """The uvloop way: install(), then plain asyncio.run()."""
    saved = asyncio.get_event_loop_policy()
    aio.install()
    try:

        async def checked():
            assert isinstance(asyncio.get_running_loop(), aio.UringEventLoop)
            return await main()

        return asyncio.run(checked())
    finally:
        asyncio.set_event_loop_policy(saved)


def test_aiohttp_server_and_client():
    aiohttp = pytest.importorskip("aiohttp", reason="aiohttp is not installed")
    from aiohttp import web

    async def hello(request):
        return web.Response(text=f"hello {request.match_info['name']}")

    async def main():
        app = web.Application()
        app.router.add_get("/{name}", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:

                async def client(i):
                    for r in range(ROUNDS):
                        async with session.get(f"http://127.0.0.1:{port}/c{i}r{r}") as resp:
                            assert resp.status == 200
                            assert await resp.text() == f"hello c{i}r{r}"
                    return ROUNDS

                done = await asyncio.gather(*(client(i) for i in range(CLIENTS)))
                assert sum(done) == CLIENTS * ROUNDS
        finally:
            await runner.cleanup()

    run(main)


async def _http_get(port: int, paths: list[str]) -> list[tuple[int, bytes]]:
    """Keep-alive HTTP/1.1 GETs on one connection; (status, body) each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    try:
        for path in paths:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            out.append((status, await reader.readexactly(length)))
    finally:
        writer.close()
        await writer.wait_closed()
    return out


def test_uvicorn_serves_an_asgi_app():
    uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")

    async def app(scope, receive, send):
        assert scope["type"] == "http"
        body = f"plain {scope['path']}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def main():
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, loop="none", lifespan="off", log_level="warning"
        )
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            paths = [[f"/c{i}r{r}" for r in range(ROUNDS)] for i in range(CLIENTS)]
            results = await asyncio.gather(*(_http_get(port, p) for p in paths))
            for p, answers in zip(paths, results, strict=True):
                assert answers == [(200, f"plain {path}".encode()) for path in p]
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 10)

    run(main)


def test_websockets_echo():
    pytest.importorskip("websockets", reason="websockets is not installed")
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]

            async def client(i):
                async with connect(f"ws://127.0.0.1:{port}") as ws:
                    for r in range(ROUNDS):
                        message = f"c{i}r{r}" * (r + 1)
                        await ws.send(message)
                        assert await ws.recv() == message
                    big = bytes(range(256)) * 1024  # 256 KiB: several frames' worth of sends
                    await ws.send(big)
                    assert await ws.recv() == big
                return ROUNDS

            done = await asyncio.gather(*(client(i) for i in range(CLIENTS)))
            assert sum(done) == CLIENTS * ROUNDS

    run_installed(main)
