"""A test application: a WebSocket server and client (``websockets`` library).

The server greets each client first (server → client), then echoes every message upper-cased.
The client sends ``--count`` messages and prints a JSON line with what it received.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve


async def handler(ws: ServerConnection) -> None:
    await ws.send("hello from server")
    async for message in ws:
        text = message if isinstance(message, str) else message.decode()
        await ws.send(text.upper())


async def run_server(port: int) -> None:
    async with serve(handler, "0.0.0.0", port) as server:
        print(f"LISTENING {port}", flush=True)
        await server.serve_forever()


async def run_client(url: str, count: int, size: int) -> None:
    received: list[str] = []
    async with connect(url, open_timeout=10, max_size=None) as ws:
        received.append(str(await asyncio.wait_for(ws.recv(), 10)))
        for i in range(count):
            await ws.send(f"message {i} " + "x" * size)
            received.append(str(await asyncio.wait_for(ws.recv(), 10)))
        response = ws.response
    print(
        json.dumps(
            {
                "status": response.status_code if response else None,
                "received": [r[:40] for r in received],
                "lengths": [len(r) for r in received],
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=8765)
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("--count", type=int, default=3)
    c.add_argument("--size", type=int, default=0)
    args = parser.parse_args()
    if args.cmd == "serve":
        asyncio.run(run_server(args.port))
    else:
        asyncio.run(run_client(args.url, args.count, args.size))


if __name__ == "__main__":
    main()
