"""The metrics API over HTTP/1.1 JSON (aiohttp), and its admin server.

``POST /api/v1/<Method>`` with a JSON body answers 200 with JSON; a bad request is 400, a
named resource that does not exist 404, and Prometheus or the platform failing 503, each with
``{"error": "<one line>"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily

from weft.controller.admin import add_admin_routes, listen_address, render_metrics, start_app
from weft.controller.metrics_api.api import MetricsApi, NotFound
from weft.controller.metrics_api.prometheus import PrometheusError
from weft.controller.metrics_api.requests import BadRequest
from weft.platform import PlatformError

log = logging.getLogger("weft.controller.metrics_api")

Method = Callable[[Any], Awaitable[dict[str, Any]]]


class RequestCounts:
    """Answers by method and status code, for the admin server's ``/metrics``."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()

    def metrics(self) -> str:
        """``metrics_api_requests_total{method, code}``."""
        family = CounterMetricFamily(
            "metrics_api_requests", "Metrics API requests answered.", labels=["method", "code"]
        )
        for (method, code), n in sorted(self.counts.items()):
            family.add_metric([method, str(code)], n)
        return render_metrics([family])


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def api_app(api: MetricsApi, counts: RequestCounts) -> web.Application:
    """The API's routes."""

    def handler(name: str, method: Method, takes_body: bool = True) -> Any:
        async def handle(request: web.Request) -> web.Response:
            response = await _answer(request, method, takes_body)
            counts.counts[(name, response.status)] += 1
            return response

        return handle

    app = web.Application()
    for name, method in (
        ("StatSummary", api.stat_summary),
        ("TopRoutes", api.top_routes),
        ("Edges", api.edges),
        ("ListPods", api.list_pods),
        ("ListServices", api.list_services),
    ):
        app.router.add_post(f"/api/v1/{name}", handler(name, method))

    async def self_check(_body: Any) -> dict[str, Any]:
        return await api.self_check()

    app.router.add_get("/api/v1/SelfCheck", handler("SelfCheck", self_check, takes_body=False))
    return app


async def _answer(request: web.Request, method: Method, takes_body: bool) -> web.Response:
    body: Any = None
    if takes_body:
        text = await request.text()
        try:
            body = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            return _error(400, f"the request body is not JSON: {exc}")
    try:
        return web.json_response(await method(body))
    except BadRequest as exc:
        return _error(400, str(exc))
    except NotFound as exc:
        return _error(404, str(exc))
    except PrometheusError as exc:
        return _error(503, str(exc))
    except PlatformError as exc:
        return _error(503, f"the platform: {exc}")
    except Exception as exc:
        log.exception("%s failed", request.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


async def serve_metrics_api(
    api: MetricsApi, listen: socket.socket, admin: socket.socket, stop: asyncio.Event
) -> None:
    """Serve the API on ``listen`` and the admin endpoints on ``admin`` until ``stop`` is set."""
    counts = RequestCounts()
    admin_app = web.Application()
    add_admin_routes(admin_app, counts.metrics, lambda: True)
    runners = [await start_app(api_app(api, counts), listen), await start_app(admin_app, admin)]
    log.info(
        "metrics API listening on %s, admin on %s", listen_address(listen), listen_address(admin)
    )
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        await api.prometheus.close()
