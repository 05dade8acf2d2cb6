"""Discovery through the destination service: ``GetProfile`` and ``Get`` streams, and the
logical destinations they feed.

A request's name (``l5d-dst-override``, ``:authority`` or ``Host``) that completes to a cluster
name is its logical destination; a request without one, and opaque TCP, use the connection's
original destination (a cluster IP or pod IP and port). Each logical destination has one
``GetProfile`` stream (routes, retry budget, traffic split) and one ``Get`` stream (its
endpoints); each backend of a split has a ``Get`` stream of its own. Streams open on first use
and stay open while the destination is used, resubscribing with back-off when they break; what
they last said stays in use meanwhile. A destination the service does not know, or that has not
answered within the initial timeout, goes to the original destination in plaintext.

A destination unused for the idle timeout (Linkerd's ``ROUTER_MAX_IDLE_AGE`` /
``DISCOVERY_IDLE_TIMEOUT``) with no request in flight on its endpoints is evicted and its
streams closed; at most ``ROUTER_CAPACITY`` are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from weft.grpc_client.calls import INTERNAL, RpcError
from weft.grpc_client.channel import Channel
from weft.identity.client import LocalIdentity, control_context
from weft.proxy.balance import Balancer, Load
from weft.proxy.config import context_namespace
from weft.proxy.discovery import Addr, Endpoint
from weft.proxy.errors import GRPC_UNAVAILABLE, ProxyError
from weft.proxy.profiles import profile_from_message
from weft.proxy.routing import Fallbacks, Logical, canonical_name
from weft.proxy_api import destination as api
from weft.proxy_api.wire import WireError

log = logging.getLogger("weft.proxy.destination")

GET = "/io.linkerd.proxy.destination.Destination/Get"
GET_PROFILE = "/io.linkerd.proxy.destination.Destination/GetProfile"
MAX_NAMES = 10000  # request names remembered with their canonical form
INITIAL_TIMEOUT = 0.5  # seconds a new destination waits for its first answer
OLD_CHANNEL_GRACE = 10.0  # seconds a channel with a replaced certificate stays open
SWEEP_BOUNDS = (0.05, 15.0)  # seconds between looks for idle destinations: min, max


def endpoint_of(waddr: api.WeightedAddr, set_labels: dict[str, str]) -> Endpoint | None:
    """The proxy's view of one address from an ``add`` update (labels become ``dst_*``; an
    ``h2`` protocol hint marks a meshed endpoint)."""
    if waddr.addr is None:
        return None
    labels = {**set_labels, **waddr.labels}
    pairs = tuple((f"dst_{k}", v) for k, v in sorted(labels.items()))
    return Endpoint(waddr.addr, pairs, waddr.tls_identity, waddr.h2)


class Resolution:
    """The endpoints one ``Get`` stream reports, balanced."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.endpoints: dict[Addr, Endpoint] = {}
        self.balancer = Balancer()
        self.exists: bool | None = None  # None until the first answer
        self.first: asyncio.Future[None] = loop.create_future()
        self.timer = loop.call_later(INITIAL_TIMEOUT, self.answered)
        self.waiters: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    def answered(self) -> None:
        """Release requests waiting for the first answer (or for the timeout)."""
        self.timer.cancel()
        if not self.first.done():
            self.first.set_result(None)

    def apply(self, update: api.Update, first: bool = False) -> None:
        """Fold one ``Update`` into the endpoint set (``first`` of a stream: replace it)."""
        if first:
            self.endpoints.clear()
        if isinstance(update, api.Add):
            for waddr in update.addrs:
                endpoint = endpoint_of(waddr, update.labels)
                if endpoint is not None:
                    self.endpoints[endpoint.addr] = endpoint
            self.exists = True
        elif isinstance(update, api.Remove):
            for addr in update.addrs:
                if addr is not None:
                    self.endpoints.pop(addr, None)
        elif isinstance(update, api.NoEndpoints):
            self.endpoints.clear()
            self.exists = update.exists
        self.balancer.update(self.endpoints)
        self.answered()
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def pick(self) -> Load | None:
        """The endpoint for the next request (P2C over peak-EWMA); None when there is none."""
        return self.balancer.pick()


class Discovered(Logical):
    """A logical destination the destination service knows about: its profile (``GetProfile``),
    its own endpoints (``Get``) and, with a traffic split, the endpoints of each backend."""

    def __init__(
        self, fallbacks: Fallbacks, name: str, own: Resolution, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(fallbacks, name)
        self.own = own
        self.splits: tuple[tuple[Resolution, int], ...] = ()
        self.first: asyncio.Future[None] = loop.create_future()
        self.profiled = False
        self.task: asyncio.Task[None] | None = None
        self.used = True  # looked up since the router last looked for idle destinations
        self.idle_since = 0.0  # when the router last saw it used (or busy)
        own.first.add_done_callback(self._part_answered)
        loop.call_later(INITIAL_TIMEOUT, self._release)

    def _part_answered(self, _future: object = None) -> None:
        """Release waiting requests once the profile, the own endpoints and those of every
        split backend have answered (each is bounded by its initial timeout)."""
        if (
            self.profiled
            and self.own.first.done()
            and all(res.first.done() for res, _ in self.splits)
        ):
            self._release()

    def _release(self) -> None:
        if not self.first.done():
            self.first.set_result(None)

    def profile_answered(self) -> None:
        """A profile arrived (its splits' endpoint streams are open)."""
        self.profiled = True
        if not self.first.done():
            for res, _ in self.splits:
                if not res.first.done():
                    res.first.add_done_callback(self._part_answered)
        self._part_answered()

    def waiting(self) -> asyncio.Future[None] | None:
        return None if self.first.done() else self.first

    def pick(self, target: Addr | None, name: str | None = None) -> Load | None:
        splits = self.splits
        if splits:
            chosen = _weighted([(res, w) for res, w in splits if res.balancer.order])
            load = chosen.pick() if chosen is not None else None
            if load is not None:
                return load
        load = self.own.pick()
        if load is not None:
            return load
        if self.own.exists or any(res.exists for res, _ in splits):
            return None
        return self.fallbacks.load(target, self.name or name)

    def changed(self) -> asyncio.Future[None] | None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.own.waiters.append(future)
        for res, _ in self.splits:
            res.waiters.append(future)
        return future

    def in_flight(self) -> bool:
        """Whether requests are in flight on its own endpoints or those of its splits."""
        if any(load.pending for load in self.own.balancer.order):
            return True
        return any(load.pending for res, _ in self.splits for load in res.balancer.order)


class AtCapacity(Logical):
    """Where requests for a new destination go while the router is full and every cached
    destination is in use: nowhere (503, as Linkerd 2.6's router at capacity)."""

    def __init__(self, fallbacks: Fallbacks, capacity: int) -> None:
        super().__init__(fallbacks)
        self.capacity = capacity

    def pick(self, target: Addr | None, name: str | None = None) -> Load | None:
        raise ProxyError(
            503, f"router at capacity ({self.capacity} destinations in use)", GRPC_UNAVAILABLE
        )


class DestinationRouter:
    """Routes by the destination service: a :class:`Discovered` logical destination per name
    (or per original destination, for requests without a usable name and opaque TCP)."""

    def __init__(
        self,
        svc_addr: tuple[str, int],
        svc_name: str,
        context_token: str,
        identity: LocalIdentity | None,
        anchors_pem: bytes | None = None,
        backoff: tuple[float, float] = (0.1, 5.0),
        suffixes: tuple[str, ...] = ("svc.cluster.local.",),
        idle_timeout: float = 60.0,
        capacity: int = 10000,
    ) -> None:
        self.svc_addr = svc_addr
        self.svc_name = svc_name
        self.context_token = context_token
        self.namespace = context_namespace(context_token)
        self.suffixes = suffixes
        self.identity = identity
        self.anchors_pem = anchors_pem
        self.backoff = backoff
        self.fallbacks = Fallbacks()
        self.resolutions: dict[str, Resolution] = {}
        self.logicals: dict[str | Addr, Discovered] = {}
        self.names: dict[tuple[str, int], str | None] = {}
        self.unrouted = Logical(self.fallbacks)
        self.idle_timeout = idle_timeout
        self.capacity = capacity
        self.full = AtCapacity(self.fallbacks, capacity)
        self._sweeper: asyncio.Task[None] | None = None
        self._channel: Channel | None = None
        self._channel_creds: object = None

    def logical(self, name: str | None, target: Addr | None) -> Logical:
        """The logical destination of ``name`` when it is a cluster name, else of ``target``."""
        port = target[1] if target is not None else 80
        if name:
            key = (name, port)
            fqdn = self.names.get(key, "")
            if fqdn == "":
                if len(self.names) >= MAX_NAMES:
                    self.names.clear()
                fqdn = self.names[key] = canonical_name(name, port, self.namespace, self.suffixes)
            if fqdn is not None:
                return self._logical(fqdn, fqdn)
        if target is None:
            return self.unrouted
        return self._logical(target, f"{target[0]}:{target[1]}")

    def _logical(self, key: str | Addr, path: str) -> Logical:
        logical = self.logicals.get(key)
        if logical is None:
            if len(self.logicals) >= self.capacity and not self._make_room():
                return self.full
            loop = asyncio.get_running_loop()
            logical = Discovered(self.fallbacks, path, self.resolution(path), loop)
            logical.idle_since = time.monotonic()
            self.logicals[key] = logical
            logical.task = loop.create_task(self._follow_profile(path, logical))
            if self._sweeper is None:
                self._sweeper = loop.create_task(self._sweep_forever())
        logical.used = True
        return logical

    def sweep(self, now: float) -> int:
        """Evict the destinations unused for the idle timeout with nothing in flight, closing
        their streams; returns how many. (Use is noted as a flag per lookup, turned into a time
        here, so a destination goes between one and one sweep period after the timeout.)"""
        idle = [key for key, logical in self.logicals.items() if self._idle(logical, now)]
        for key in idle:
            self._evict(key)
        if idle:
            self._release_resolutions()
        return len(idle)

    def _idle(self, logical: Discovered, now: float) -> bool:
        if logical.used or logical.in_flight():
            logical.used = False
            logical.idle_since = now
            return False
        return now - logical.idle_since >= self.idle_timeout

    def _make_room(self) -> bool:
        """Evict the least recently used destination with nothing in flight, if there is one."""
        victim: tuple[bool, float, str | Addr] | None = None
        for key, logical in self.logicals.items():
            rank = (logical.used, logical.idle_since, key)
            if (victim is None or rank[:2] < victim[:2]) and not logical.in_flight():
                victim = rank
        if victim is None:
            log.warning("router at capacity: %d destinations, all in use", self.capacity)
            return False
        self._evict(victim[2])
        self._release_resolutions()
        return True

    def _evict(self, key: str | Addr) -> None:
        logical = self.logicals.pop(key)
        log.debug("destination %s is idle: closing its streams", logical.name)
        if logical.task is not None:
            logical.task.cancel()

    def _release_resolutions(self) -> None:
        """Close the ``Get`` streams that no cached destination (or split) uses any more."""
        used = {id(logical.own) for logical in self.logicals.values()}
        used.update(id(res) for logical in self.logicals.values() for res, _ in logical.splits)
        for path, res in list(self.resolutions.items()):
            if id(res) not in used:
                del self.resolutions[path]
                if res.task is not None:
                    res.task.cancel()
                res.timer.cancel()

    async def _sweep_forever(self) -> None:
        low, high = SWEEP_BOUNDS
        period = min(max(self.idle_timeout / 4, low), high)
        while True:
            await asyncio.sleep(period)
            self.sweep(time.monotonic())

    def resolution(self, path: str) -> Resolution:
        """The ``Get`` stream for ``path`` (``host:port``), opened on first use."""
        res = self.resolutions.get(path)
        if res is None:
            loop = asyncio.get_running_loop()
            res = self.resolutions[path] = Resolution(loop)
            res.task = loop.create_task(self._follow_endpoints(path, res))
        return res

    def close(self) -> None:
        """Stop every stream."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for res in self.resolutions.values():
            if res.task is not None:
                res.task.cancel()
            res.timer.cancel()
        for logical in self.logicals.values():
            if logical.task is not None:
                logical.task.cancel()
        if self._channel is not None:
            self._channel.close()

    def _channel_now(self) -> Channel:
        """A channel presenting this proxy's current certificate (a new one after renewal).

        Without identity the server is still verified against the trust anchors when they are
        known; with neither, the channel is plaintext.
        """
        creds = self.identity.current if self.identity is not None else None
        if self._channel is None or creds is not self._channel_creds:
            if self._channel is not None:
                # Streams on the old channel end when it closes and resubscribe on the new one.
                asyncio.get_running_loop().call_later(OLD_CHANNEL_GRACE, self._channel.close)
            if creds is not None:
                tls = creds.control
            elif self.anchors_pem:
                tls = control_context(self.anchors_pem)
            else:
                tls = None
            self._channel = Channel(self.svc_addr, tls, self.svc_name)
            self._channel_creds = creds
        return self._channel

    async def _follow_endpoints(self, path: str, res: Resolution) -> None:
        first = True

        def apply(update: api.Update) -> None:
            nonlocal first
            res.apply(update, first)
            first = False

        def restart() -> None:
            nonlocal first
            first = True

        await self._follow(GET, path, api.decode_update, apply, restart)

    async def _follow_profile(self, path: str, logical: Discovered) -> None:
        port = int(path.rsplit(":", 1)[1])

        def apply(message: api.DestinationProfile) -> None:
            profile = profile_from_message(message, port)
            logical.set_profile(profile)
            logical.splits = tuple(
                (self.resolution(_strip_dot(authority)), weight)
                for authority, weight in profile.overrides
            )
            logical.profile_answered()

        await self._follow(GET_PROFILE, path, api.decode_profile, apply, lambda: None)

    async def _follow(
        self,
        method: str,
        path: str,
        decode: Callable[[bytes], Any],
        apply: Callable[[Any], None],
        restart: Callable[[], None],
    ) -> None:
        """Keep one server stream of ``method`` for ``path`` open, resubscribing with back-off;
        what it last said stays in use meanwhile."""
        what = "profile" if method == GET_PROFILE else "destination"
        delay = self.backoff[0]
        while True:
            if self.identity is not None:
                await self.identity.ready.wait()
            request = api.get_destination("k8s", path, self.context_token)
            restart()
            try:
                replies = self._channel_now().server_stream(method, request)
                async with contextlib.aclosing(replies):
                    async for reply in replies:
                        try:
                            message = decode(reply)
                        except WireError as exc:
                            raise RpcError(INTERNAL, f"unreadable message: {exc}") from exc
                        apply(message)
                        delay = self.backoff[0]
                log.info("%s stream for %s ended; resubscribing", what, path)
            except RpcError as exc:
                log.warning(
                    "%s stream for %s failed (%s: %s); retrying in %.1fs",
                    what,
                    path,
                    exc.code_name,
                    exc.details,
                    delay,
                )
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))
            delay = min(delay * 2, self.backoff[1])


def _weighted(choices: list[tuple[Resolution, int]]) -> Resolution | None:
    """One of ``choices``, drawn with probability proportional to its weight."""
    roll = random.uniform(0, sum(w for _, w in choices))
    for res, weight in choices:
        roll -= weight
        if roll <= 0:
            return res
    return choices[-1][0] if choices else None


def _strip_dot(authority: str) -> str:
    """``host.:port`` → ``host:port`` (TrafficSplit authorities end the host with a dot)."""
    host, sep, port = authority.rpartition(":")
    return f"{host.rstrip('.')}:{port}" if sep else authority.rstrip(".")
