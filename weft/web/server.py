"""``weft controller web``: the dashboard's pages, its JSON API under ``/api/`` and live tap.

Paths that are not ``/api/...`` or ``/assets/...`` are the single-page app's own (``/``,
``/namespaces/emojivoto/deployments/web``, ``/tap``, ``/controlplane``): each answers with the
built ``index.html``, so a shared URL opens the same view. When the frontend was never built the
pages answer 503 with what to run instead of a blank screen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from weft.controller.admin import render_metrics, start_admin
from weft.web import pages, shape
from weft.web import queries as q
from weft.web.backends import BackendError, Backends, BackendUrls

log = logging.getLogger("weft.web")

DIST = Path(__file__).parent / "dist"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>weft dashboard: not built</title>
<link rel="icon" href="data:,"></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>The dashboard's frontend is not built</h1>
<p>This server has no <code>{dist}/index.html</code>.
Run <code>scripts/setup</code> in the weft checkout (it runs
<code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>), then reload.</p>
<p>The JSON API under <code>/api/</code> works without it.</p>
</body></html>
"""
FIRST_MESSAGE_TIMEOUT = 30.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class WebConfig:
    """What the dashboard server needs to know."""

    urls: BackendUrls
    control_namespace: str = "weft"
    dist: Path = DIST


@dataclass
class WebStats:
    """What the admin server exports."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    taps: int = 0


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Dashboard:
    """The dashboard's aiohttp application."""

    def __init__(self, config: WebConfig, backends: Backends) -> None:
        self.config = config
        self.backends = backends
        self.stats = WebStats()
        self.app = web.Application(middlewares=[self._middleware])
        self.app.add_routes(
            [
                web.get("/api/overview", self.overview),
                web.get("/api/controlplane", self.control_plane),
                web.get("/api/tap", self.tap),
                web.get("/api/namespaces/{namespace}", self.namespace),
                web.get("/api/namespaces/{namespace}/{type}/{name}", self.workload),
                web.get("/api/namespaces/{namespace}/{type}/{name}/series", self.series),
                web.route("*", "/api/{tail:.*}", self.no_api),
                web.get("/assets/{name:.+}", self.asset),
                web.get("/{tail:.*}", self.page),
            ]
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """JSON errors for the API, security headers for everything, counts for the admin."""
        try:
            response = await handler(request)
        except q.QueryError as exc:
            response = _json_error(400, str(exc))
        except BackendError as exc:
            response = _json_error(exc.status, str(exc))
        except web.HTTPException as exc:
            if not request.path.startswith("/api/"):
                raise
            response = _json_error(exc.status, exc.reason)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "/api/"
            key = (name, response.status)
            self.stats.requests[key] = self.stats.requests.get(key, 0) + 1
        return response

    # -- the JSON API ---------------------------------------------------------------------------

    @staticmethod
    def _stat_window(request: web.Request) -> q.Window:
        return q.parse_window(request.query.get("window"), q.DEFAULT_STAT_WINDOW, q.STAT_WINDOW)

    async def overview(self, request: web.Request) -> web.Response:
        """``GET /api/overview?window=1m``: every namespace."""
        return web.json_response(await pages.overview(self.backends, self._stat_window(request)))

    async def namespace(self, request: web.Request) -> web.Response:
        """``GET /api/namespaces/<ns>?window=1m``: tables and topology."""
        name = q.check_name("namespace", request.match_info["namespace"])
        body = await pages.namespace(self.backends, name, self._stat_window(request))
        return web.json_response(body)

    def _workload(self, request: web.Request) -> Any:
        info = request.match_info
        return q.workload(info["namespace"], info["type"], info["name"])

    async def workload(self, request: web.Request) -> web.Response:
        """``GET /api/namespaces/<ns>/<type>/<name>?window=1m``: one workload."""
        res = self._workload(request)
        body = await pages.workload(self.backends, res, self._stat_window(request))
        return web.json_response(body)

    async def series(self, request: web.Request) -> web.Response:
        """``GET /api/namespaces/<ns>/<type>/<name>/series?window=15m``: chart data."""
        res = self._workload(request)
        window = q.parse_window(
            request.query.get("window"), q.DEFAULT_SERIES_WINDOW, q.SERIES_WINDOW
        )
        return web.json_response(await pages.series(self.backends, res, window, time.time()))

    async def control_plane(self, request: web.Request) -> web.Response:
        """``GET /api/controlplane``: components, certificates, proxies."""
        body = await pages.control_plane(self.backends, self.config.control_namespace, time.time())
        return web.json_response(body)

    async def no_api(self, request: web.Request) -> web.Response:
        """Unknown API paths: 404 in JSON."""
        return _json_error(404, f"no API at {request.path}")

    # -- live tap ---------------------------------------------------------------------------------

    async def tap(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/tap`` (WebSocket): the first message is the query, then one message per
        event until the browser sends ``stop`` or closes; errors arrive as ``{"error": ...}``."""
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
        if not ws.can_prepare(request).ok:
            return _json_error(400, "/api/tap is a WebSocket: connect with a WebSocket client")
        await ws.prepare(request)
        try:
            message = await ws.receive(timeout=FIRST_MESSAGE_TIMEOUT)
        except TimeoutError:
            await ws.close(message=b"no tap query")
            return ws
        if message.type != WSMsgType.TEXT:
            await ws.close()
            return ws
        self.stats.taps += 1
        try:
            request_ = q.tap_request(json.loads(message.data))
            async with self.backends.tap(request_.path, request_.body) as lines:
                await ws.send_json({"started": request_.target.to_json()})
                await self._stream(ws, lines)
        except ValueError as exc:  # QueryError, or a first message that is not JSON
            text = str(exc) if isinstance(exc, q.QueryError) else "the tap query is not JSON"
            await self._send_error(ws, 400, text)
        except BackendError as exc:
            await self._send_error(ws, exc.status, str(exc))
        finally:
            self.stats.taps -= 1
            await ws.close()
        return ws

    @staticmethod
    async def _send_error(ws: web.WebSocketResponse, status: int, message: str) -> None:
        if not ws.closed:
            await ws.send_json({"error": message, "status": status})

    @staticmethod
    async def _stream(ws: web.WebSocketResponse, lines: AsyncIterator[bytes]) -> None:
        """Relay events until the tap ends, the browser says ``stop`` or goes away."""

        async def pump() -> None:
            async for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    await ws.send_json(shape.tap_event(event))

        async def watch() -> None:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data == "stop":
                    return

        tasks = {asyncio.ensure_future(pump()), asyncio.ensure_future(watch())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if (exc := task.exception()) is not None and not isinstance(exc, ConnectionError):
                raise exc
        if any(task.exception() is None for task in done) and not ws.closed:
            await ws.send_json({"end": True})

    # -- the frontend -----------------------------------------------------------------------------

    async def asset(self, request: web.Request) -> web.StreamResponse:
        """A built asset (hashed file names, so cached for good)."""
        root = (self.config.dist / "assets").resolve()
        path = (root / request.match_info["name"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            path, headers={"Cache-Control": "public, max-age=31536000, immutable"}
        )

    async def page(self, request: web.Request) -> web.StreamResponse:
        """Any page of the app: ``index.html``, or a 503 page saying how to build it."""
        index = self.config.dist / "index.html"
        if not index.is_file():
            return web.Response(
                status=503,
                text=NOT_BUILT.format(dist=self.config.dist),
                content_type="text/html",
            )
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    def metrics(self) -> str:
        """The admin server's ``/metrics``."""
        requests = CounterMetricFamily(
            "web_api_requests",
            "Dashboard API requests by route and status",
            labels=["route", "code"],
        )
        for (route, code), n in sorted(self.stats.requests.items()):
            requests.add_metric([route, str(code)], n)
        taps = GaugeMetricFamily("web_tap_sessions", "Live taps open in browsers")
        taps.add_metric([], self.stats.taps)
        return render_metrics([requests, taps])


async def serve_web(
    config: WebConfig, listen: tuple[str, int], admin: tuple[str, int], stop: asyncio.Event
) -> None:
    """Serve the dashboard until ``stop`` is set."""
    async with Backends(config.urls) as backends:
        dashboard = Dashboard(config, backends)
        serving = asyncio.Event()
        admin_runner = await start_admin(*admin, dashboard.metrics, serving.is_set)
        runner = web.AppRunner(dashboard.app, access_log=None, handler_cancellation=True)
        await runner.setup()
        try:
            await web.TCPSite(runner, *listen).start()
            serving.set()
            if not (config.dist / "index.html").is_file():
                log.warning(
                    "no built frontend in %s: pages answer 503 (run scripts/setup)", config.dist
                )
            log.info("dashboard listening on %s:%d", *listen)
            await stop.wait()
        finally:
            await runner.cleanup()
            await admin_runner.cleanup()
