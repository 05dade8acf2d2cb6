"""Runs the destination service: its own certificate from the identity service (renewed like
a proxy's), gRPC over TLS, and an admin server."""

from __future__ import annotations

import asyncio
import logging

import grpc.aio
from prometheus_client.core import GaugeMetricFamily

from weft.controller.admin import render_metrics, start_admin
from weft.controller.destination.addresses import MeshSettings
from weft.controller.destination.service import DestinationService
from weft.controller.tls import RotatingServerCredentials
from weft.identity.client import LocalIdentity
from weft.identity.config import IdentityConfig
from weft.platform import Platform

log = logging.getLogger("weft.controller.destination")


async def serve_destination(
    platform: Platform,
    settings: MeshSettings,
    listen: tuple[str, int],
    admin: tuple[str, int],
    own: IdentityConfig | None,
    stop: asyncio.Event,
) -> None:
    """Serve Destination until ``stop`` is set (TLS unless ``own`` is None)."""
    service = DestinationService(platform, settings)
    identity: LocalIdentity | None = None
    creds: RotatingServerCredentials | None = None
    if own is not None:

        def rotate(current: object) -> None:
            if creds is not None and identity is not None and identity.current is not None:
                creds.update(identity.current.chain_pem, identity.key_pem)

        identity = LocalIdentity(own, rotate)
        identity.start()
        log.info("waiting for a certificate for %s", own.local_name)
        await identity.ready.wait()
        assert identity.current is not None
        creds = RotatingServerCredentials(identity.current.chain_pem, identity.key_pem)
    server = grpc.aio.server()
    service.add_to_server(server)
    host, port = listen
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if creds is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, creds.credentials())
    await service.start()
    await server.start()

    def metrics() -> str:
        streams = GaugeMetricFamily("destination_get_streams", "Open Destination.Get streams")
        streams.add_metric([], service.open_streams)
        profiles = GaugeMetricFamily(
            "destination_get_profile_streams", "Open Destination.GetProfile streams"
        )
        profiles.add_metric([], service.open_profile_streams)
        return render_metrics([streams, profiles])

    runner = await start_admin(*admin, metrics, service.ready.is_set)
    log.info("destination service listening on %s:%d", host, port)
    try:
        await stop.wait()
    finally:
        if identity is not None:
            identity.stop()
        await server.stop(1.0)
        await service.stop()
        await runner.cleanup()
