"""A proxy process with identity and discovery on loads none of grpcio, cryptography and
protobuf (issue 16: they were most of a proxy's resident memory).

The identity service certifies the proxy; the destination service (grpcio, TLS with a
certificate from the same identity service) answers its ``Get`` and ``GetProfile`` streams, and a
request by name is routed by what they say (the proxy's fallback address refuses connections).
Then the proxy's memory map must hold none of those
libraries' shared objects: grpcio's ``cygrpc``, cryptography's ``_rust``, protobuf's ``_upb``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

from harness.identity_service import (
    DESTINATION_SVC,
    IDENTITY_SVC,
    WEB,
    Running,
    client_certificate,
    running,
)
from harness.loopback import LoopbackProxy, refused_port
from tests.integration.test_destination_service import NS, MemoryPlatform
from tests.integration.test_discovery_idle import Backend, get, slow_service
from weft.controller.destination.addresses import MeshSettings
from weft.controller.destination.service import DestinationService

pytestmark = pytest.mark.anyio

LIBRARIES = {"grpcio": "cygrpc", "cryptography": "_rust", "protobuf": "_upb"}


def mapped(pid: int) -> dict[str, bool]:
    """Which of :data:`LIBRARIES` process ``pid`` has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name: marker in maps for name, marker in LIBRARIES.items()}


async def test_a_proxy_with_identity_and_discovery_loads_no_grpc_cryptography_or_protobuf(
    tmp_path: Path,
) -> None:
    backend = Backend()
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    backend.port = server.sockets[0].getsockname()[1]
    platform = MemoryPlatform()
    for obj in slow_service(backend.port):
        platform.put(obj)
    with refused_port() as nowhere:
        async with server, running(tmp_path) as r, destination_service(r, platform) as service:
            token_file = tmp_path / "web-token"
            token_file.write_bytes(r.token(NS, "web"))
            proxy = LoopbackProxy(
                ("127.0.0.1", backend.port),
                tmp_path,
                LINKERD2_PROXY_IDENTITY_LOCAL_NAME=WEB,
                LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS=r.anchors_pem.decode(),
                LINKERD2_PROXY_IDENTITY_TOKEN_FILE=str(token_file),
                LINKERD2_PROXY_IDENTITY_SVC_ADDR=f"127.0.0.1:{r.port}",
                LINKERD2_PROXY_IDENTITY_SVC_NAME=IDENTITY_SVC,
                LINKERD2_PROXY_DESTINATION_SVC_ADDR=f"127.0.0.1:{service.port}",
                LINKERD2_PROXY_DESTINATION_SVC_NAME=DESTINATION_SVC,
                LINKERD2_PROXY_DESTINATION_CONTEXT=f"ns:{NS}",
                LINKERD2_PROXY_OUTBOUND_FORWARD=f"127.0.0.1:{nowhere}",
                LINKERD2_PROXY_LOG="warn,weft=info",
            )
            del proxy.env["LINKERD2_PROXY_IDENTITY_DISABLED"]
            try:
                # Ready only once it holds a certificate from the identity service.
                await asyncio.to_thread(proxy.start)
                host = f"slow.{NS}.svc.cluster.local:80"  # the Service's port, not the fallback's
                assert await get(proxy, host) == b"HTTP/1.1 200 OK"
                # Both streams were opened over TLS, presenting the proxy's certificate.
                assert service.streams() == (1, 1)
                assert f"got certificate for {WEB}" in proxy.log_path.read_text()
                assert proxy.proc is not None
                assert mapped(proxy.proc.pid) == dict.fromkeys(LIBRARIES, False)
                # ... while this process, with grpcio's server, has them all: the markers work.
                assert mapped(os.getpid()) == dict.fromkeys(LIBRARIES, True)
            finally:
                proxy.stop()


@dataclass
class TlsDestination:
    """The destination service on a grpcio server over TLS."""

    service: DestinationService
    port: int

    def streams(self) -> tuple[int, int]:
        """Open ``Get`` and ``GetProfile`` streams."""
        return self.service.open_streams, self.service.open_profile_streams


@asynccontextmanager
async def destination_service(
    r: Running, platform: MemoryPlatform
) -> AsyncIterator[TlsDestination]:
    """The destination service over ``platform``, serving TLS as ``DESTINATION_SVC`` with a
    certificate from the identity service ``r``."""
    service = DestinationService(platform, MeshSettings())
    await service.start()
    key, chain = await client_certificate(r, DESTINATION_SVC)
    server = grpc.aio.server()
    service.add_to_server(server)
    tls = grpc.ssl_server_credentials([(key, chain)], root_certificates=r.anchors_pem)
    port = server.add_secure_port("127.0.0.1:0", tls)
    await server.start()
    try:
        yield TlsDestination(service, port)
    finally:
        await server.stop(None)
        await service.stop()
