"""The ``io.linkerd.proxy.destination.Destination`` gRPC service, fed by the platform's watches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from weft.api import destination_pb2 as pb
from weft.controller.destination.addresses import (
    AddressSet,
    ClusterState,
    MeshSettings,
    diff,
    resolve,
)
from weft.controller.destination.convert import update_message
from weft.controller.destination.profiles import profile_for
from weft.platform import Platform, WatchEvent

log = logging.getLogger("weft.controller.destination")

SERVICE_NAME = "io.linkerd.proxy.destination.Destination"
# The kinds a Get stream and a GetProfile stream depend on.
ADDRESS_KINDS = frozenset({"Service", "Endpoints", "Pod"})
PROFILE_KINDS = frozenset({"Service", "ServiceProfile", "TrafficSplit"})
WATCHED_KINDS = ("Service", "Endpoints", "Pod", "ServiceProfile", "TrafficSplit")
INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0
# How long a first answer waits for the initial state before answering from what is known.
READY_TIMEOUT = 5.0

# Tasks that stop a service when its server terminates (kept here so they are not collected).
_BACKGROUND: set[asyncio.Task[None]] = set()


class DestinationService:
    """Follows the platform's watched kinds and answers ``Get`` and ``GetProfile`` streams."""

    def __init__(
        self, platform: Platform, settings: MeshSettings, *, ready_timeout: float = READY_TIMEOUT
    ) -> None:
        self.platform = platform
        self.settings = settings
        self.ready_timeout = ready_timeout
        self.state = ClusterState()
        # Set once every watched kind has been listed.
        self.ready = asyncio.Event()
        self._synced: set[str] = set()
        # One event per open stream, set when something the stream depends on changed.
        self._subscribers: set[asyncio.Event] = set()
        self._profile_subscribers: set[asyncio.Event] = set()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def open_streams(self) -> int:
        """How many ``Get`` streams are open."""
        return len(self._subscribers)

    @property
    def open_profile_streams(self) -> int:
        """How many ``GetProfile`` streams are open."""
        return len(self._profile_subscribers)

    async def start(self) -> None:
        """Start following the platform (returns at once; :attr:`ready` tells when it caught up)."""
        for kind in WATCHED_KINDS:
            task = asyncio.create_task(self._follow(kind), name=f"destination-watch-{kind}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop following the platform and end the open streams."""
        self._stopped.set()
        self._notify()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _follow(self, kind: str) -> None:
        backoff = INITIAL_BACKOFF
        while True:
            try:
                self._replace(kind, await self.platform.list(kind))
                watch = self.platform.watch(kind)
                try:
                    async for event in watch:
                        self._apply(kind, event)
                        backoff = INITIAL_BACKOFF
                finally:
                    aclose = getattr(watch, "aclose", None)
                    if aclose is not None:
                        await aclose()
                log.warning("watch of %s ended; re-establishing in %.1fs", kind, backoff)
            except Exception as exc:
                log.warning("watch of %s failed (%s); re-establishing in %.1fs", kind, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _replace(self, kind: str, objects: list[dict[str, Any]]) -> None:
        self.state.replace(kind, [])
        for obj in objects:
            self._apply(kind, WatchEvent("ADDED", obj), notify=False)
        self._synced.add(kind)
        if self._synced.issuperset(WATCHED_KINDS):
            self.ready.set()
        self._notify(kind)

    def _apply(self, kind: str, event: WatchEvent, notify: bool = True) -> None:
        try:
            self.state.apply(kind, event.type, event.object)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ignoring a malformed %s %s event: %r", kind, event.type, exc)
            return
        if notify:
            self._notify(kind)

    def _notify(self, kind: str | None = None) -> None:
        """Wake the streams that depend on ``kind`` (all of them when None)."""
        for subscribers, kinds in (
            (self._subscribers, ADDRESS_KINDS),
            (self._profile_subscribers, PROFILE_KINDS),
        ):
            if kind is None or kind in kinds:
                for changed in subscribers:
                    changed.set()

    async def _await_ready(self) -> None:
        if self.ready.is_set():
            return
        try:
            async with asyncio.timeout(self.ready_timeout):
                await self.ready.wait()
        except TimeoutError:
            log.warning("answering before the platform's initial state arrived")

    async def Get(
        self, request: pb.GetDestination, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Update]:
        """Stream the endpoints of ``request.path``: all of them first, then the changes."""
        log.debug("Get %s", request.path)
        changed = asyncio.Event()
        self._subscribers.add(changed)
        try:
            await self._await_ready()
            current: AddressSet | None = None
            while not self._stopped.is_set():
                changed.clear()
                new = resolve(self.state, request.path, self.settings)
                for update in diff(current, new):
                    yield update_message(update)
                current = new
                await changed.wait()
        finally:
            self._subscribers.discard(changed)

    async def GetProfile(
        self, request: pb.GetDestination, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DestinationProfile]:
        """Stream the profile of ``request.path``: at once, then again whenever it changes."""
        log.debug("GetProfile %s (context %r)", request.path, request.context_token)
        changed = asyncio.Event()
        self._profile_subscribers.add(changed)
        try:
            await self._await_ready()
            sent: bytes | None = None
            while not self._stopped.is_set():
                changed.clear()
                profile = profile_for(
                    self.state, request.path, request.context_token, self.settings
                )
                encoded = profile.SerializeToString(deterministic=True)
                if encoded != sent:
                    yield profile
                    sent = encoded
                await changed.wait()
        finally:
            self._profile_subscribers.discard(changed)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register ``Get`` and ``GetProfile`` on a ``grpc.aio`` server."""
        handlers = {
            "Get": grpc.unary_stream_rpc_method_handler(
                self.Get,
                request_deserializer=pb.GetDestination.FromString,
                response_serializer=pb.Update.SerializeToString,
            ),
            "GetProfile": grpc.unary_stream_rpc_method_handler(
                self.GetProfile,
                request_deserializer=pb.GetDestination.FromString,
                response_serializer=pb.DestinationProfile.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )


async def serve(
    platform: Platform,
    settings: MeshSettings,
    listen: tuple[str, int],
    credentials: grpc.ServerCredentials | None,
) -> grpc.aio.Server:
    """Start the destination service and a gRPC server for it; the service stops with it."""
    host, port = listen
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    service = DestinationService(platform, settings)
    server = grpc.aio.server()
    service.add_to_server(server)
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    await service.start()
    await server.start()
    log.info("destination service listening on %s port %d", host, bound)
    task = asyncio.create_task(_stop_with(server, service), name="destination-stop")
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return server


async def _stop_with(server: grpc.aio.Server, service: DestinationService) -> None:
    try:
        await server.wait_for_termination()
    finally:
        await service.stop()
