"""The fan-out benchmark's peer: a minimal asyncio Server-Sent Events broadcaster on
loopback. `GET /live` opens a stream; `POST /send?data=X` writes `event: message`, `data: X`
to every open stream. It prints its port on its first line."""

import asyncio

streams = set()


async def handle(reader, writer):
    request = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    method, target = request.decode().split()[:2]
    if method == "GET" and target == "/live":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\r\n")
        await writer.drain()
        streams.add(writer)
        try:
            await reader.read()
        finally:
            streams.discard(writer)
        return
    if method == "POST" and target.startswith("/send?data="):
        event = f"event: message\ndata: {target.split('=', 1)[1]}\n\n".encode()
        for w in list(streams):
            w.write(event)
        await asyncio.gather(*(w.drain() for w in list(streams)), return_exceptions=True)
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    else:
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
