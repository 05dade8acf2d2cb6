"""A control-plane component's admin server: ``/metrics``, ``/ready`` and ``/live``."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


async def start_admin(
    host: str,
    port: int,
    metrics: Callable[[], str],
    ready: Callable[[], bool],
    *,
    sock: socket.socket | None = None,
) -> web.AppRunner:
    """Serve the admin endpoints on ``host:port`` (or on ``sock``, already bound, which is
    taken over) until the returned runner is cleaned up."""
    app = web.Application()
    add_admin_routes(app, metrics, ready)
    if sock is not None:
        return await start_app(app, sock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def start_app(app: web.Application, sock: socket.socket) -> web.AppRunner:
    """Serve ``app`` on the listening socket ``sock`` until the returned runner is cleaned up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


def listen_address(sock: socket.socket) -> str:
    """``host:port`` a listening socket is bound to (``[host]:port`` for IPv6)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def add_admin_routes(
    app: web.Application, metrics: Callable[[], str], ready: Callable[[], bool]
) -> None:
    """Add ``/metrics``, ``/ready`` and ``/live`` to ``app``."""

    async def get_metrics(_request: web.Request) -> web.Response:
        return web.Response(text=metrics(), content_type="text/plain")

    async def get_ready(_request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def get_live(_request: web.Request) -> web.Response:
        return web.Response(text="live\n")

    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/ready", get_ready)
    app.router.add_get("/live", get_live)


def render_metrics(families: Iterable[Metric]) -> str:
    """Prometheus text exposition of ``families``."""

    class _Once(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once())
    return generate_latest(registry).decode()
