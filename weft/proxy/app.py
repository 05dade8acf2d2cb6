"""Runs a proxy: listeners, admin server, idle-series retirement and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping

from weft.proxy.admin import AdminState, start_admin
from weft.proxy.config import ConfigError, ProxyConfig
from weft.proxy.context import INBOUND, OUTBOUND, ConnTracker
from weft.proxy.discovery import OriginalDestination
from weft.proxy.log import LogControl
from weft.proxy.metrics import LabelPairs, ProxyMetrics
from weft.proxy.server import Listener

log = logging.getLogger("weft.proxy")

# Identity is disabled: linkerd2-proxy labels such connections tls="disabled".
TLS_DISABLED: LabelPairs = (("tls", "disabled"),)


def check_supported(config: ProxyConfig) -> None:
    """Refuse configurations this build cannot serve, with one actionable line."""
    if not config.identity_disabled:
        raise ConfigError(
            "mTLS identity is not available yet: set LINKERD2_PROXY_IDENTITY_DISABLED=1"
        )


async def run(env: Mapping[str, str]) -> int:
    """Run the proxy until SIGTERM/SIGINT or ``POST /shutdown``; returns an exit status."""
    config = ProxyConfig.from_env(env)
    check_supported(config)
    logs = LogControl(config.log_filter, json_format=config.log_format == "json")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    metrics = ProxyMetrics(config.metrics_retain_idle)
    tracker = ConnTracker()
    router = OriginalDestination()
    if config.destination_addr is not None:
        log.warning("no destination client in this build; routing to original destinations")
    admin_state = AdminState(metrics, logs, env, config.shutdown_endpoint_enabled, stop.set)
    listeners = [
        Listener(INBOUND, config, config.inbound, metrics, router, tracker, TLS_DISABLED),
        Listener(OUTBOUND, config, config.outbound, metrics, router, tracker, TLS_DISABLED),
    ]
    admin = await start_admin(admin_state, *config.admin_listen)
    for listener in listeners:
        await listener.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    retire = loop.create_task(_retire_idle(metrics, config.metrics_retain_idle))
    admin_state.ready = True
    log.info("proxy ready (pid %d)", os.getpid())
    await stop.wait()
    log.info("shutting down: draining connections for up to %gs", config.shutdown_grace_period)
    admin_state.ready = False
    for listener in listeners:
        listener.stop_accepting()
    left = await tracker.drain(config.shutdown_grace_period)
    if left:
        log.warning("closed %d connections that did not drain in time", left)
    for listener in listeners:
        listener.h2_pool.close()  # GOAWAY to upstreams, so their closes are counted
    retire.cancel()
    admin.close()
    return 0


async def _retire_idle(metrics: ProxyMetrics, retain: float) -> None:
    period = max(1.0, min(60.0, retain / 4))
    while True:
        await asyncio.sleep(period)
        metrics.retire_idle()
