"""How the four programs run: the loop (uvloop, SIGTERM/SIGINT, exit status) and a gRPC server."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping

import grpc
import grpc.aio
import uvloop

from weft.emojivoto.env import EnvError

Main = Callable[[Mapping[str, str], asyncio.Event], Awaitable[None]]


def run(name: str, main: Main) -> None:
    """Run ``main(os.environ, stop)`` on uvloop; SIGTERM and SIGINT set ``stop``.

    Logs go to stderr as ``<name> <message>``. Exits 0 when ``main`` returns, 2 with one line on
    stderr on an :class:`EnvError`, 1 with one line if the program cannot start (``OSError``).
    """
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stderr)

    async def with_signals() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(os.environ, stop)

    try:
        uvloop.run(with_signals())
    except EnvError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(1)


async def serve_grpc(
    handler: grpc.GenericRpcHandler, port: int, stop: asyncio.Event, log: logging.Logger
) -> None:
    """Serve ``handler`` on ``0.0.0.0:port`` (plaintext) until ``stop`` is set."""
    # gRPC sets SO_REUSEPORT by default; off, a port in use fails here instead of being shared.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    try:
        bound = server.add_insecure_port(f"0.0.0.0:{port}")
    except RuntimeError as exc:
        raise OSError(f"cannot listen on 0.0.0.0:{port}: {exc}") from exc
    await server.start()
    log.info("listening on 0.0.0.0:%d", bound)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=1.0)
