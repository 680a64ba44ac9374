"""The bare endpoint the HTTP benchmarks compare against: a minimal asyncio HTTP/1.1 keep-alive
server (one process, one loop, no framework) that answers every POST 200 with LangWatch's body.

    python -m benchmarks.bare_endpoint PORT [DELAY_S] [--parse]

DELAY_S waits before each answer (bench_replay's slow endpoint); --parse reads each body as JSON
first (bench_sandbox's baseline: a server that at least looks at what it is sent).
"""

from __future__ import annotations

import asyncio
import json
import sys

ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 28\r\n\r\n"
    b'{"message": "Event tracked"}'
)


async def serve(port: int, delay_s: float = 0.0, parse: bool = False) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                if parse:
                    json.loads(body)
                if delay_s:
                    await asyncio.sleep(delay_s)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--parse"]
    asyncio.run(
        serve(int(args[0]), float(args[1]) if len(args) > 1 else 0.0, "--parse" in sys.argv)
    )
