"""Discovery through the destination service: ``Destination.Get`` streams per original
destination, and a router that spreads requests over what they return.

Each distinct original destination (a Service's cluster IP and port, or a pod IP and port) gets
one ``Get`` stream, opened when the first connection to it arrives and kept open, resubscribing
with back-off when it breaks; the endpoints last learned stay in use meanwhile. A destination the
service does not know, or that has not answered within the initial timeout, goes to the
original destination in plaintext.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import random
from collections.abc import Callable

import grpc
import grpc.aio

from weft.api import destination_pb2, net_pb2
from weft.identity.client import LocalIdentity
from weft.proxy.discovery import Addr, Endpoint
from weft.proxy.errors import GRPC_UNAVAILABLE, ProxyError

log = logging.getLogger("weft.proxy.destination")

GET = "/io.linkerd.proxy.destination.Destination/Get"
INITIAL_TIMEOUT = 0.5  # seconds a new destination waits for its first answer
OLD_CHANNEL_GRACE = 10.0  # seconds a channel with a replaced certificate stays open


def tcp_address(addr: net_pb2.TcpAddress) -> Addr | None:
    """``(ip, port)`` of a protobuf TcpAddress (IPv4 and IPv6)."""
    ip = addr.ip
    kind = ip.WhichOneof("ip")
    if kind == "ipv4":
        return str(ipaddress.IPv4Address(ip.ipv4)), addr.port
    if kind == "ipv6":
        value = (ip.ipv6.first << 64) | ip.ipv6.last
        return str(ipaddress.IPv6Address(value)), addr.port
    return None


def endpoint_of(waddr: destination_pb2.WeightedAddr, set_labels: dict[str, str]) -> Endpoint | None:
    """The proxy's view of one address from an ``add`` update (labels become ``dst_*``)."""
    addr = tcp_address(waddr.addr)
    if addr is None:
        return None
    labels = {**set_labels, **waddr.metric_labels}
    identity = None
    if waddr.HasField("tls_identity"):
        tls = waddr.tls_identity
        if tls.WhichOneof("strategy") == "dns_like_identity":
            identity = tls.dns_like_identity.name or None
    pairs = tuple((f"dst_{k}", v) for k, v in sorted(labels.items()))
    return Endpoint(addr, pairs, identity)


class Resolution:
    """What the destination service says about one original destination."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.endpoints: dict[Addr, Endpoint] = {}
        self.exists: bool | None = None  # None until the first answer
        self.first: asyncio.Future[None] = loop.create_future()
        self.timer = loop.call_later(INITIAL_TIMEOUT, self.answered)
        self._rr: itertools.cycle[Endpoint] | None = None
        self.task: asyncio.Task[None] | None = None

    def answered(self) -> None:
        """Release connections waiting for the first answer (or for the timeout)."""
        self.timer.cancel()
        if not self.first.done():
            self.first.set_result(None)

    def apply(self, update: destination_pb2.Update, first: bool = False) -> None:
        """Fold one ``Update`` into the endpoint set (``first`` of a stream: replace it)."""
        kind = update.WhichOneof("update")
        if first:
            self.endpoints.clear()
        if kind == "add":
            labels = dict(update.add.metric_labels)
            for waddr in update.add.addrs:
                endpoint = endpoint_of(waddr, labels)
                if endpoint is not None:
                    self.endpoints[endpoint.addr] = endpoint
            self.exists = True
        elif kind == "remove":
            for tcp in update.remove.addrs:
                addr = tcp_address(tcp)
                if addr is not None:
                    self.endpoints.pop(addr, None)
        elif kind == "no_endpoints":
            self.endpoints.clear()
            self.exists = update.no_endpoints.exists
        self._rr = None
        self.answered()

    def pick(self) -> Endpoint | None:
        """The next endpoint, round robin; None when there is none."""
        if not self.endpoints:
            return None
        if self._rr is None:
            self._rr = itertools.cycle(list(self.endpoints.values()))
        return next(self._rr)


class DestinationRouter:
    """Routes to endpoints the destination service returns for each original destination."""

    def __init__(
        self,
        svc_addr: tuple[str, int],
        svc_name: str,
        context_token: str,
        identity: LocalIdentity | None,
        anchors_pem: bytes | None = None,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self.svc_addr = svc_addr
        self.svc_name = svc_name
        self.context_token = context_token
        self.identity = identity
        self.anchors_pem = anchors_pem
        self.backoff = backoff
        self.resolutions: dict[Addr, Resolution] = {}
        self._channel: grpc.aio.Channel | None = None
        self._channel_leaf: object = None

    def prepare(self, target: Addr | None) -> asyncio.Future[None] | None:
        """Open a ``Get`` stream for ``target`` if there is none; wait for its first answer."""
        if target is None:
            return None
        res = self.resolutions.get(target)
        if res is None:
            loop = asyncio.get_running_loop()
            res = self.resolutions[target] = Resolution(loop)
            res.task = loop.create_task(self._follow(target, res))
        return None if res.first.done() else res.first

    def endpoint(self, authority: str | None, target: Addr | None) -> Endpoint:
        """An endpoint of ``target``'s destination, else ``target`` itself (plaintext)."""
        if target is None:
            raise ProxyError(
                502, f"no route to {authority or 'an unknown destination'}", GRPC_UNAVAILABLE
            )
        res = self.resolutions.get(target)
        if res is not None:
            endpoint = res.pick()
            if endpoint is not None:
                return endpoint
            if res.exists:
                raise ProxyError(503, f"no endpoints for {target[0]}:{target[1]}", GRPC_UNAVAILABLE)
        return Endpoint(target)

    def close(self) -> None:
        """Stop every stream."""
        for res in self.resolutions.values():
            if res.task is not None:
                res.task.cancel()
            res.timer.cancel()

    def _channel_now(self) -> grpc.aio.Channel:
        """A channel presenting this proxy's current certificate (a new one after renewal).

        Without identity the server is still verified against the trust anchors when they are
        known; with neither, the channel is plaintext.
        """
        creds = self.identity.current if self.identity is not None else None
        leaf = creds.leaf if creds is not None else None
        if self._channel is None or leaf is not self._channel_leaf:
            if self._channel is not None:
                # Streams on the old channel end when it closes and resubscribe on the new one.
                old = self._channel
                loop = asyncio.get_running_loop()
                loop.call_later(OLD_CHANNEL_GRACE, lambda: loop.create_task(old.close()))
            target = f"{self.svc_addr[0]}:{self.svc_addr[1]}"
            options = [("grpc.ssl_target_name_override", self.svc_name)]
            if self.identity is not None and creds is not None:
                tls = grpc.ssl_channel_credentials(
                    root_certificates=self.identity.cfg.trust_anchors_pem,
                    private_key=self.identity.key_pem,
                    certificate_chain=creds.chain_pem,
                )
                self._channel = grpc.aio.secure_channel(target, tls, options=options)
            elif self.anchors_pem:
                tls = grpc.ssl_channel_credentials(root_certificates=self.anchors_pem)
                self._channel = grpc.aio.secure_channel(target, tls, options=options)
            else:
                self._channel = grpc.aio.insecure_channel(target)
            self._channel_leaf = leaf
        return self._channel

    async def _follow(self, target: Addr, res: Resolution) -> None:
        path = f"{target[0]}:{target[1]}"
        delay = self.backoff[0]
        while True:
            if self.identity is not None:
                await self.identity.ready.wait()
            request = destination_pb2.GetDestination(
                scheme="k8s", path=path, context_token=self.context_token
            )
            get: Callable[..., grpc.aio.UnaryStreamCall] = self._channel_now().unary_stream(
                GET,
                request_serializer=destination_pb2.GetDestination.SerializeToString,
                response_deserializer=destination_pb2.Update.FromString,
            )
            first = True
            try:
                async for update in get(request):
                    res.apply(update, first)
                    first = False
                    delay = self.backoff[0]
                log.info("destination stream for %s ended; resubscribing", path)
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "destination stream for %s failed (%s: %s); retrying in %.1fs",
                    path,
                    exc.code().name,
                    exc.details(),
                    delay,
                )
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))
            delay = min(delay * 2, self.backoff[1])
