"""The tap controller's HTTP API (Linkerd's tap paths), its own certificate, and its admin server.

``POST /apis/tap.linkerd.io/v1alpha1/watch/namespaces/<ns>[/<plural>/<name>]/tap`` with a JSON
query answers with one JSON ``TapEvent`` per line for as long as the caller stays connected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from weft.controller.admin import add_admin_routes, listen_address, render_metrics, start_app
from weft.controller.destination.addresses import MeshSettings
from weft.controller.tap import authz
from weft.controller.tap.enrich import pod_index
from weft.controller.tap.query import QueryError, parse_query
from weft.controller.tap.session import TapFailed, TapSession, TlsMaterial
from weft.controller.tap.targets import TargetError, tap_targets
from weft.identity.client import LocalIdentity
from weft.identity.config import IdentityConfig
from weft.platform import Platform, PlatformError

log = logging.getLogger("weft.controller.tap")

PREFIX = "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/{namespace}"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@dataclass
class TapStats:
    """What the admin server exports."""

    sessions: int = 0
    refused: int = 0
    events: int = 0
    dropped: int = 0


class TapApi:
    """Serves tap requests for authorized callers."""

    def __init__(
        self,
        platform: Platform,
        settings: MeshSettings,
        identity: LocalIdentity,
        authorized: Collection[str],
    ) -> None:
        self.platform = platform
        self.settings = settings
        self.identity = identity
        self.authorized = authorized
        self.stats = TapStats()
        self.app = web.Application()
        self.app.add_routes(
            [
                web.post(PREFIX + "/tap", self.tap),
                web.post(PREFIX + "/{plural}/{name}/tap", self.tap),
            ]
        )

    def _tls(self) -> TlsMaterial:
        creds = self.identity.current
        assert creds is not None, "the API is served only once a certificate is held"
        return TlsMaterial(
            creds.chain_pem, self.identity.key_pem, self.identity.cfg.trust_anchors_pem
        )

    async def _authorize(self, request: web.Request) -> str:
        token = authz.bearer_token(request.headers.get("Authorization"))
        review = await self.platform.verify_token(token)
        if not review.authenticated:
            raise authz.Unauthorized(401, f"token not authenticated: {review.reason or 'rejected'}")
        authz.check_user(review.username, self.authorized)
        return review.username

    async def tap(self, request: web.Request) -> web.StreamResponse:
        """One tap: authorize, resolve, open the proxies' streams, then stream events."""
        info = request.match_info
        try:
            user = await self._authorize(request)
            body = await request.json() if request.can_read_body else {}
            query = parse_query(
                info["namespace"], info.get("plural", ""), info.get("name", ""), body
            )
            pods = await self.platform.list("Pod")
            services = await self.platform.list("Service", query.target.namespace)
            targets = tap_targets(query.target, pods, services, self.settings)
        except authz.Unauthorized as exc:
            self.stats.refused += 1
            return _error(exc.status, str(exc))
        except (QueryError, json.JSONDecodeError) as exc:
            return _error(400, str(exc) if isinstance(exc, QueryError) else "body is not JSON")
        except TargetError as exc:
            return _error(exc.status, str(exc))
        except PlatformError as exc:
            return _error(503, f"cannot list pods: {exc}")
        session = TapSession(targets, query, self._tls(), pod_index(pods))
        try:
            problems = await session.start()
        except TapFailed as exc:
            return _error(503, str(exc))
        log.info("%s taps %s (%d proxies)", user, query.target, len(targets))
        self.stats.sessions += 1
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        try:
            await response.prepare(request)
            for problem in problems:
                await response.write(json.dumps({"warning": problem}).encode() + b"\n")
            async for event in session.events():
                self.stats.events += 1
                await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the caller went away
        finally:
            self.stats.sessions -= 1
            self.stats.dropped += session.dropped
            await session.close()
        return response


async def serve_tap(
    platform: Platform,
    settings: MeshSettings,
    listen: socket.socket,
    admin: socket.socket,
    own: IdentityConfig,
    authorized: Collection[str],
    stop: asyncio.Event,
) -> None:
    """Serve the tap API on ``listen`` (once this component holds a certificate) and the admin
    endpoints on ``admin``, until ``stop`` is set."""
    identity = LocalIdentity(own)
    identity.start()
    api = TapApi(platform, settings, identity, authorized)

    def metrics() -> str:
        sessions = GaugeMetricFamily("tap_sessions", "Tap requests being served")
        sessions.add_metric([], api.stats.sessions)
        refused = CounterMetricFamily("tap_refused", "Tap requests refused as unauthorized")
        refused.add_metric([], api.stats.refused)
        events = CounterMetricFamily("tap_events", "Tap events sent to callers")
        events.add_metric([], api.stats.events)
        dropped = CounterMetricFamily("tap_events_dropped", "Tap events dropped for slow callers")
        dropped.add_metric([], api.stats.dropped)
        return render_metrics([sessions, refused, events, dropped])

    admin_app = web.Application()
    add_admin_routes(admin_app, metrics, identity.ready.is_set)
    runner = await start_app(admin_app, admin)
    log.info("waiting for a certificate for %s", own.local_name)
    api_runner: web.AppRunner | None = None
    try:
        ready = asyncio.ensure_future(identity.ready.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not stop.is_set():
            # A caller that goes away cancels its handler, which closes its proxies' streams.
            api_runner = web.AppRunner(api.app, access_log=None, handler_cancellation=True)
            await api_runner.setup()
            await web.SockSite(api_runner, listen).start()
            log.info("tap API listening on %s", listen_address(listen))
        await stopped
    finally:
        identity.stop()
        if api_runner is not None:
            await api_runner.cleanup()
        await runner.cleanup()
