"""The targets server Prometheus discovers its scrape targets from (``http_sd_configs``).

It follows Pods through the platform (a list, then a watch, re-established with back-off when
it breaks) and answers ``GET /targets?job=<job>`` with the job's target groups, computed from
the pods it holds at that moment.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from weft.controller.admin import add_admin_routes, listen_address, render_metrics, start_app
from weft.controller.destination.addresses import object_key
from weft.controller.prometheus.targets import JOBS, UnknownJob, target_groups
from weft.platform import Platform

log = logging.getLogger("weft.controller.prometheus")

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0


class PodTargets:
    """The cluster's pods, kept current by the platform's watch, and the targets they make."""

    def __init__(self, platform: Platform, control_namespace: str) -> None:
        self.platform = platform
        self.control_namespace = control_namespace
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        # Set once the pods have been listed.
        self.ready = asyncio.Event()
        self.restarts = 0

    def groups(self, job: str) -> list[dict[str, Any]]:
        """The target groups of ``job``; raises :class:`UnknownJob`."""
        return target_groups(job, self.pods.values(), self.control_namespace)

    async def follow(self) -> None:
        """List and watch Pods until cancelled."""
        backoff = INITIAL_BACKOFF
        while True:
            try:
                listed = await self.platform.list("Pod")
                self.pods = {object_key(pod): pod for pod in listed}
                self.ready.set()
                async for event in self.platform.watch("Pod"):
                    key = object_key(event.object)
                    if event.type == "DELETED":
                        self.pods.pop(key, None)
                    else:
                        self.pods[key] = event.object
                    backoff = INITIAL_BACKOFF
                log.warning("the watch of pods ended; re-establishing in %.1fs", backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the watch of pods failed (%s); re-establishing in %.1fs", exc, backoff)
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def metrics(self) -> str:
        """The admin server's exposition: targets per job, pods known, watch restarts."""
        targets = GaugeMetricFamily(
            "sd_targets", "Targets the server lists, per job.", labels=["job"]
        )
        for job in JOBS:
            targets.add_metric([job], len(self.groups(job)))
        pods = GaugeMetricFamily("sd_pods", "Pods the server knows of.")
        pods.add_metric([], len(self.pods))
        restarts = CounterMetricFamily(
            "sd_watch_restarts", "Times the watch of pods was re-established."
        )
        restarts.add_metric([], self.restarts)
        return render_metrics([targets, pods, restarts])


def targets_app(targets: PodTargets) -> web.Application:
    """``GET /targets?job=<job>`` plus ``/ready``, ``/live`` and ``/metrics``."""

    async def get_targets(request: web.Request) -> web.Response:
        job = request.query.get("job", "")
        try:
            return web.json_response(targets.groups(job))
        except UnknownJob as exc:
            return web.json_response({"error": str(exc)}, status=400)

    app = web.Application()
    app.router.add_get("/targets", get_targets)
    add_admin_routes(app, targets.metrics, targets.ready.is_set)
    return app


async def serve_targets(
    platform: Platform,
    control_namespace: str,
    listen: socket.socket,
    admin: socket.socket | None,
    stop: asyncio.Event,
) -> None:
    """Serve targets on ``listen`` (and the admin endpoints on ``admin``) until ``stop`` is set."""
    targets = PodTargets(platform, control_namespace)
    follower = asyncio.create_task(targets.follow(), name="prometheus-targets-watch")
    runners = [await start_app(targets_app(targets), listen)]
    if admin is not None:
        admin_app = web.Application()
        add_admin_routes(admin_app, targets.metrics, targets.ready.is_set)
        runners.append(await start_app(admin_app, admin))
    admin_at = "" if admin is None else f", admin on {listen_address(admin)}"
    log.info("serving Prometheus targets on %s%s", listen_address(listen), admin_at)
    try:
        await stop.wait()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        for runner in runners:
            await runner.cleanup()
