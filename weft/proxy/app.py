"""Runs a proxy: listeners, admin server, idle-series retirement and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from weft.proxy.admin import AdminState, start_admin
from weft.proxy.config import ConfigError, ProxyConfig
from weft.proxy.context import INBOUND, OUTBOUND, ConnTracker
from weft.proxy.log import LogControl
from weft.proxy.metrics import ProxyMetrics
from weft.proxy.routing import OriginalDestination, Router
from weft.proxy.server import Listener
from weft.proxy.tap.registry import Taps

if TYPE_CHECKING:
    from weft.identity.client import LocalIdentity

log = logging.getLogger("weft.proxy")


def make_router(config: ProxyConfig, identity: LocalIdentity | None) -> Router:
    """The outbound router: the destination service client when one is configured, else
    original destinations."""
    if config.destination_addr is None:
        return OriginalDestination()
    from weft.proxy.destination import DestinationRouter  # only with discovery

    if config.trust_anchors_pem and not config.destination_name:
        raise ConfigError(
            "LINKERD2_PROXY_DESTINATION_SVC_NAME must be set with DESTINATION_SVC_ADDR "
            "when trust anchors are given"
        )
    return DestinationRouter(
        config.destination_addr,
        config.destination_name,
        config.destination_context,
        identity,
        config.trust_anchors_pem,
        suffixes=config.destination_suffixes,
        idle_timeout=config.outbound.discovery_idle_timeout,
        capacity=config.outbound.router_capacity,
    )


async def run(env: Mapping[str, str]) -> int:
    """Run the proxy until SIGTERM/SIGINT or ``POST /shutdown``; returns an exit status."""
    config = ProxyConfig.from_env(env)
    logs = LogControl(config.log_filter, json_format=config.log_format == "json")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    metrics = ProxyMetrics(config.metrics_retain_idle)
    tracker = ConnTracker()
    identity = None
    if config.identity is not None:
        from weft.identity.client import LocalIdentity, TrustAnchorsError

        try:
            identity = LocalIdentity(
                config.identity, lambda c: setattr(metrics, "cert_expiry", c.expiry.timestamp())
            )
        except TrustAnchorsError as exc:
            raise ConfigError(str(exc)) from exc
        identity.start()
    router = make_router(config, identity)
    admin_state = AdminState(metrics, logs, env, config.shutdown_endpoint_enabled, stop.set)
    taps = Taps()
    listeners = [
        # Inbound requests go to the local app: no discovery, whatever they are addressed to.
        Listener(
            INBOUND,
            config,
            config.inbound,
            metrics,
            OriginalDestination(),
            tracker,
            identity,
            taps=taps,
        ),
        Listener(OUTBOUND, config, config.outbound, metrics, router, tracker, identity, taps=taps),
    ]
    admin = await start_admin(admin_state, *config.admin_listen)
    log.info("admin server on %s:%s", *admin.sockets[0].getsockname()[:2])
    for listener in listeners:
        await listener.start()
    control = None
    if identity is not None and not config.tap_disabled:
        from weft.proxy.tap.server import ControlServer  # only when tap is served

        control = ControlServer(taps, identity, config.control_listen, config.tap_svc_name)
        await control.start()
        metrics.taps = taps
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    retire = loop.create_task(_retire_idle(metrics, config.metrics_retain_idle))
    if identity is not None:
        log.info("waiting for a certificate for %s", identity.name)
        ready = loop.create_task(identity.ready.wait())
        await asyncio.wait([ready, loop.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    admin_state.ready = True
    log.info("proxy ready (pid %d)", os.getpid())
    await stop.wait()
    log.info("shutting down: draining connections for up to %gs", config.shutdown_grace_period)
    admin_state.ready = False
    for listener in listeners:
        listener.stop_accepting()
    if control is not None:
        control.close()
    left = await tracker.drain(config.shutdown_grace_period)
    if left:
        log.warning("closed %d connections that did not drain in time", left)
    for listener in listeners:
        listener.h2_pool.close()  # GOAWAY to upstreams, so their closes are counted
    retire.cancel()
    if identity is not None:
        identity.stop()
    close = getattr(router, "close", None)
    if close is not None:
        close()
    admin.close()
    return 0


async def _retire_idle(metrics: ProxyMetrics, retain: float) -> None:
    period = max(1.0, min(60.0, retain / 4))
    while True:
        await asyncio.sleep(period)
        metrics.retire_idle()
