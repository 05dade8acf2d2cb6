"""What every protocol handler gets to know about an accepted connection."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from weft.proxy.config import DirectionConfig, ProxyConfig
from weft.proxy.deadlines import Deadlines
from weft.proxy.discovery import Endpoint
from weft.proxy.metrics import ConnStats, LabelPairs, ProxyMetrics
from weft.proxy.routing import Router
from weft.proxy.tap.registry import Fields, RequestFacts, Tapped, Taps
from weft.proxy.tls import Dialer

if TYPE_CHECKING:
    from weft.proxy.profiles import Route

Addr = tuple[str, int]

INBOUND = "inbound"
OUTBOUND = "outbound"

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def original_dst(sock: socket.socket | None, local: Addr | None) -> Addr | None:
    """The pre-REDIRECT destination of an accepted socket, or ``None`` for a direct connection."""
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port = struct.unpack_from("!H", raw, 2)[0]
    addr = (socket.inet_ntoa(raw[4:8]), port)
    if local is not None and addr == (local[0], local[1]):
        return None  # conntrack saw no NAT: the client dialled the proxy itself
    return addr


class InFlight:
    """How many requests are in flight through one listener, and how many it allows
    (``LINKERD2_PROXY_{INBOUND,OUTBOUND}_MAX_IN_FLIGHT``)."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.limit = limit


C = TypeVar("C")


class IdlePool(Protocol[C]):
    """Idle keep-alive connections per endpoint (``http1.H1Pool``). The handlers above this
    module own the connection classes, so the context holds ``IdlePool[Any]`` and each handler
    names its own class where it takes one."""

    def take(self, endpoint: Endpoint) -> C | None:
        """An idle connection to ``endpoint``, if there is one."""
        ...

    def put(self, conn: C, idle_timeout: float, max_idle: int) -> None:
        """Keep ``conn`` for reuse."""

    def forget(self, conn: C) -> None:
        """Drop a closed connection."""


class StreamPool(Protocol):
    """The shared upstream HTTP/2 connections of a listener (``h2.pool.H2Pool``)."""

    def acquire(self, endpoint: Endpoint, ctx: ConnContext) -> Any:
        """A connection to ``endpoint`` with room for a stream (``h2.pool.ClientConn``), or None
        when every one is at the server's stream limit."""

    def room(self, endpoint: Endpoint) -> asyncio.Future[None]:
        """A future done when a stream to ``endpoint`` closes."""
        ...


class Drainable(Protocol):
    """A connection handler that can be asked to finish its in-flight work and close."""

    def drain(self) -> None:
        """Stop taking new requests; close once in-flight ones are done."""

    def abort(self) -> None:
        """Close now."""


class ConnTracker:
    """The live connections of one proxy, so that shutdown can drain them."""

    def __init__(self) -> None:
        self.active: set[Drainable] = set()
        self._emptied = asyncio.Event()
        self.draining = False

    def add(self, conn: Drainable) -> None:
        """Register a connection (drained at once if shutdown has begun)."""
        self.active.add(conn)
        self._emptied.clear()
        if self.draining:
            conn.drain()

    def discard(self, conn: Drainable) -> None:
        """Forget a closed connection."""
        self.active.discard(conn)
        if not self.active:
            self._emptied.set()

    async def drain(self, grace: float) -> int:
        """Drain every connection; abort those left after ``grace`` seconds and count them."""
        self.draining = True
        for conn in list(self.active):
            conn.drain()
        if self.active:
            try:
                async with asyncio.timeout(grace):
                    await self._emptied.wait()
            except TimeoutError:
                pass
        left = list(self.active)
        for conn in left:
            conn.abort()
        return len(left)


@dataclass(slots=True)
class ConnContext:
    """An accepted connection: where it came from, where it goes, and what to count it in."""

    direction: str
    config: ProxyConfig
    dcfg: DirectionConfig
    metrics: ProxyMetrics
    router: Router
    tracker: ConnTracker
    h1_pool: IdlePool[Any]  # http1.H1Pool[H1Upstream]
    h2_pool: StreamPool
    downgrade_pool: IdlePool[Any]  # H1Pool[downgrade.AppConn]: for l5d-orig-proto requests
    peer: Addr
    orig_dst: Addr | None
    target: Addr | None
    tls: LabelPairs
    stats: ConnStats
    dialer: Dialer
    taps: Taps
    in_flight: InFlight
    deadlines: Deadlines
    client_id: str | None = None
    base_labels: LabelPairs = ()

    def __post_init__(self) -> None:
        self.base_labels = (("direction", self.direction), *self.tls)

    def request_labels(self, endpoint: Endpoint) -> LabelPairs:
        """Labels of a request routed to ``endpoint``.

        Inbound: the connection's (its client's identity); outbound: the endpoint's ``dst_*``
        labels and the TLS of the connection to it (``server_id``).
        """
        if self.direction == INBOUND:
            return self.base_labels + endpoint.labels if endpoint.labels else self.base_labels
        return (("direction", self.direction), *endpoint.labels, *self.dialer.tls_labels(endpoint))

    def dst_conn_stats(self, endpoint: Endpoint) -> ConnStats:
        """Open the ``peer="dst"`` TCP series for a connection this proxy dials to ``endpoint``."""
        labels = (("direction", self.direction), ("peer", "dst"), *self.dialer.tls_labels(endpoint))
        return self.metrics.tcp.stats(labels).open()

    def observe(
        self,
        endpoint: Endpoint | None,
        method: str,
        scheme: str | None,
        authority: str,
        path: str,
        load_fields: Callable[[], Fields],
        route: Route | None,
        now: float,
    ) -> Tapped | None:
        """Offer a request routed to ``endpoint`` (None: answered by the proxy before one was
        chosen) to the proxy's taps. Only called while ``taps.active``."""
        if endpoint is None:
            destination = self.orig_dst or self.target
            dst_pairs: LabelPairs = ()
            dst_tls: LabelPairs = ()
        else:
            inbound = self.direction == INBOUND
            destination = (self.orig_dst or endpoint.addr) if inbound else endpoint.addr
            dst_pairs = () if inbound else endpoint.labels
            dst_tls = self.dialer.tls_labels(endpoint)
        facts = RequestFacts(
            self.direction,
            self.peer,
            destination,
            method,
            scheme,
            authority,
            path,
            load_fields,
            src_tls=self.tls,
            dst_pairs=dst_pairs,
            dst_tls=dst_tls,
            route_pairs=route.labels if route is not None else (),
        )
        return self.taps.observe(facts, now)
