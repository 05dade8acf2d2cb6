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

    async def get_metrics(_request: web.Request) -> web.Response:
        return web.Response(text=metrics(), content_type="text/plain")

    async def get_ready(_request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def get_live(_request: web.Request) -> web.Response:
        return web.Response(text="live\n")

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/ready", get_ready)
    app.router.add_get("/live", get_live)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
    await site.start()
    return runner


def render_metrics(families: Iterable[Metric]) -> str:
    """Prometheus text exposition of ``families``."""

    class _Once(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once())
    return generate_latest(registry).decode()
