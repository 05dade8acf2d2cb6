"""A proxy process's discovery streams against the real destination service: a destination no
request has used for ``LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT`` has its ``Get`` and
``GetProfile`` streams closed, while one with a request in flight keeps them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from harness.loopback import LoopbackProxy
from tests.integration.test_destination_service import NS, MemoryPlatform, eventually
from weft.controller.destination.addresses import MeshSettings
from weft.controller.destination.service import DestinationService

pytestmark = pytest.mark.anyio

IDLE = "1s"
TIMEOUT = 10.0
UNUSED_NAMES = ("a", "b", "c")  # services nobody runs: their requests go to the forward address


@dataclass
class Backend:
    """An HTTP/1.1 server on loopback; ``GET /hold`` is answered once ``release`` is set."""

    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request, then close."""
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /hold "):
            self.arrived.set()
            await self.release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
        await writer.drain()
        writer.close()


def slow_service(port: int) -> list[dict[str, object]]:
    """Service ``slow`` whose one endpoint is the backend on 127.0.0.1:``port``."""
    meta = {"name": "slow", "namespace": NS}
    return [
        {
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "clusterIP": "10.96.0.40",
                "selector": {"app": "slow"},
                "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}],
            },
        },
        {
            "kind": "Pod",
            "metadata": {"name": "slow-1", "namespace": NS, "labels": {"app": "slow"}},
            "spec": {"containers": [{"name": "slow"}]},
            "status": {"phase": "Running", "podIP": "127.0.0.1"},
        },
        {
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [
                {
                    "addresses": [
                        {"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "name": "slow-1"}}
                    ],
                    "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                }
            ],
        },
    ]


@asynccontextmanager
async def destination_service(
    platform: MemoryPlatform,
) -> AsyncIterator[tuple[DestinationService, int]]:
    """The destination service over ``platform``, on a gRPC server on loopback."""
    service = DestinationService(platform, MeshSettings())
    await service.start()
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield service, port
    finally:
        await server.stop(None)
        await service.stop()


async def get(proxy: LoopbackProxy, host: str, path: str = "/") -> bytes:
    """``GET path`` with ``Host: host`` through the proxy's outbound listener; the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.2", proxy.outbound)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        async with asyncio.timeout(TIMEOUT):
            return (await reader.readuntil(b"\r\n")).strip()
    finally:
        writer.close()


async def test_idle_destinations_close_their_streams_at_the_service(tmp_path: Path) -> None:
    backend = Backend()
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    backend.port = server.sockets[0].getsockname()[1]
    platform = MemoryPlatform()
    for obj in slow_service(backend.port):
        platform.put(obj)
    async with server, destination_service(platform) as (service, port):
        proxy = LoopbackProxy(
            ("127.0.0.1", backend.port),
            tmp_path,
            LINKERD2_PROXY_DESTINATION_SVC_ADDR=f"127.0.0.1:{port}",
            LINKERD2_PROXY_DESTINATION_CONTEXT=f"ns:{NS}",
            LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT=IDLE,
        )
        await asyncio.to_thread(proxy.start)
        try:

            def streams() -> tuple[int, int]:
                return service.open_streams, service.open_profile_streams

            for name in UNUSED_NAMES:
                assert await get(proxy, f"{name}.{NS}.svc.cluster.local") == b"HTTP/1.1 200 OK"
            held = asyncio.create_task(get(proxy, f"slow.{NS}.svc.cluster.local", "/hold"))
            async with asyncio.timeout(TIMEOUT):
                await backend.arrived.wait()  # routed by discovery to the backend, in flight
            assert streams() == (4, 4)  # a Get and a GetProfile per name
            await eventually(lambda: streams() == (1, 1), "the unused names' streams to close")
            backend.release.set()
            assert await held == b"HTTP/1.1 200 OK"
            await eventually(lambda: streams() == (0, 0), "slow's streams to close once idle")
        finally:
            proxy.stop()
