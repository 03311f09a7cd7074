#!/usr/bin/env python3
"""A merchant endpoint for benchmarks: answers every request 200 after LATENCY_MS,
over keep-alive connections, and counts them. Checks nothing (scripts/webhook-receiver
is the one that verifies signatures); it is made to cost the machine little.

    webhook-sink.py PORT [LATENCY_MS=0]

GET /count answers the number of POSTs answered so far.
"""

import asyncio
import sys

answered = 0


async def serve(reader, writer, latency):
    global answered
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET /count"):
                body = str(answered).encode()
            else:
                if latency:
                    await asyncio.sleep(latency)
                answered += 1
                body = b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port, latency):
    server = await asyncio.start_server(lambda r, w: serve(r, w, latency), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0))
