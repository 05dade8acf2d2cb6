"""Runs the identity service: gRPC over TLS with its own rotating certificate, issuer renewal,
and an admin server whose ``/metrics`` counts Certify outcomes."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime

import grpc.aio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from weft.controller.admin import render_metrics, start_admin
from weft.controller.identity.authority import Authority
from weft.controller.identity.service import IdentityService, keep_issuer_fresh
from weft.controller.tls import RotatingServerCredentials
from weft.identity import certs
from weft.identity.names import identity_name
from weft.platform import Platform

log = logging.getLogger("weft.controller.identity")


def own_certificate(authority: Authority, name: str) -> tuple[bytes, bytes, datetime]:
    """A serving certificate for the identity service itself: ``(chain PEM, key PEM, expiry)``."""
    key = certs.new_key()
    csr = certs.check_csr(certs.make_csr(key, name), name)
    leaf = authority.certify(csr, name, datetime.now(UTC))
    chain = certs.certs_to_pem([leaf, *authority.issuer.chain])
    return chain, certs.key_to_pem(key), certs.not_after(leaf)


def _metrics(service: IdentityService, authority: Authority) -> list[Metric]:
    certify = CounterMetricFamily(
        "identity_certify_requests", "Certify requests by outcome (gRPC code)", labels=["code"]
    )
    for code, n in sorted(service.outcomes.items()):
        certify.add_metric([code], n)
    expiry = GaugeMetricFamily(
        "identity_cert_expiration_timestamp_seconds",
        "When the trust anchors and the issuer expire (Unix time)",
        labels=["cert"],
    )
    for anchor in authority.material.anchors:
        expiry.add_metric(
            [f"anchor:{certs.common_name(anchor)}"], certs.not_after(anchor).timestamp()
        )
    expiry.add_metric(["issuer"], certs.not_after(authority.issuer.cert).timestamp())
    return [certify, expiry]


async def serve_identity(
    authority: Authority,
    platform: Platform,
    listen: tuple[str, int],
    admin: tuple[str, int] | socket.socket,
    service_account: str,
    stop: asyncio.Event,
) -> None:
    """Serve Certify until ``stop`` is set; ``admin`` is an address or a bound socket."""
    cfg = authority.config
    name = identity_name(
        service_account, cfg.control_namespace, cfg.control_namespace, cfg.trust_domain
    )
    chain, key, expiry = own_certificate(authority, name)
    creds = RotatingServerCredentials(chain, key)
    service = IdentityService(authority, platform)
    server = grpc.aio.server()
    service.add_to_server(server)
    host, port = listen
    server.add_secure_port(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}", creds.credentials()
    )
    await server.start()

    def metrics() -> str:
        return render_metrics(_metrics(service, authority))

    if isinstance(admin, socket.socket):
        runner = await start_admin("", 0, metrics, lambda: True, sock=admin)
    else:
        runner = await start_admin(*admin, metrics, lambda: True)
    log.info("identity service for %s listening on %s:%d", cfg.trust_domain, host, port)
    for line in authority.warnings(datetime.now(UTC)):
        log.warning("TRUST ATTENTION: %s", line)

    def reissue() -> None:
        nonlocal expiry
        new_chain, new_key, expiry = own_certificate(authority, name)
        creds.update(new_chain, new_key)

    async def renew_own() -> None:
        while True:
            left = (expiry - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(1.0, 0.7 * left))
            reissue()

    tasks = [
        asyncio.create_task(keep_issuer_fresh(authority, reissue)),
        asyncio.create_task(renew_own()),
    ]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await server.stop(1.0)
        await runner.cleanup()
