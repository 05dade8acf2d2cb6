"""Listeners: accept a connection, find where it was going, detect its protocol, hand it over."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

from weft.proxy.config import DirectionConfig, ProxyConfig
from weft.proxy.context import INBOUND, Addr, ConnContext, ConnTracker, original_dst
from weft.proxy.detect import MAX_DETECT_BYTES, Protocol, detect
from weft.proxy.discovery import Router
from weft.proxy.http1 import H1Pool, serve_http1
from weft.proxy.http2 import H2Pool, serve_http2
from weft.proxy.metrics import LabelPairs, ProxyMetrics
from weft.proxy.tcp import serve_opaque

log = logging.getLogger("weft.proxy.server")


@dataclass
class Listener:
    """One of the proxy's two data-plane listeners (inbound or outbound)."""

    direction: str
    config: ProxyConfig
    dcfg: DirectionConfig
    metrics: ProxyMetrics
    router: Router
    tracker: ConnTracker
    tls: LabelPairs
    h1_pool: H1Pool = field(default_factory=H1Pool)
    h2_pool: H2Pool = field(default_factory=H2Pool)
    server: asyncio.Server | None = None

    async def start(self) -> Addr:
        """Bind and start accepting; returns the bound address."""
        loop = asyncio.get_running_loop()
        host, port = self.dcfg.listen
        self.server = await loop.create_server(
            lambda: _Accepting(self), host, port, reuse_address=True, backlog=1024
        )
        bound = self.server.sockets[0].getsockname()
        log.info("%s listener on %s:%s", self.direction, bound[0], bound[1])
        return bound[0], bound[1]

    def stop_accepting(self) -> None:
        """Close the listening socket; accepted connections carry on."""
        if self.server is not None:
            self.server.close()

    def context(self, transport: asyncio.Transport) -> ConnContext:
        """Build the context of a freshly accepted connection."""
        sock = transport.get_extra_info("socket")
        local = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername") or ("", 0)
        orig = original_dst(sock, local)
        target: Addr | None
        if orig is None:
            target = self.dcfg.forward
        elif self.direction == INBOUND:
            target = ("127.0.0.1", orig[1])
        else:
            target = orig
        labels = (("direction", self.direction), ("peer", "src"), *self.tls)
        return ConnContext(
            direction=self.direction,
            config=self.config,
            dcfg=self.dcfg,
            metrics=self.metrics,
            router=self.router,
            tracker=self.tracker,
            h1_pool=self.h1_pool,
            h2_pool=self.h2_pool,
            peer=(peer[0], peer[1]),
            orig_dst=orig,
            target=target,
            tls=self.tls,
            stats=self.metrics.tcp.stats(labels).open(),
        )


class _Accepting(asyncio.Protocol):
    """Holds a new connection until its first bytes tell what protocol it speaks."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None
        self.ctx: ConnContext
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.ctx = self.listener.context(self.transport)
        port = self.ctx.orig_dst[1] if self.ctx.orig_dst else (self.ctx.target or ("", 0))[1]
        if port in self.listener.dcfg.opaque_ports:
            serve_opaque(self.transport, self.ctx, b"")
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.listener.dcfg.detect_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        self.ctx.stats.read += len(data)
        self.buf += data
        found = detect(self.buf)
        if found is None and len(self.buf) < MAX_DETECT_BYTES:
            return
        self._hand_over(found or Protocol.OPAQUE)

    def eof_received(self) -> bool:
        if self.buf:
            self._hand_over(Protocol.OPAQUE, eof=True)
            return True
        return False  # closed before saying anything

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.ctx.stats.close()

    def _timed_out(self) -> None:
        log.debug("protocol detection timed out for %s:%s; treating as opaque", *self.ctx.peer)
        self._hand_over(Protocol.OPAQUE)

    def _hand_over(self, proto: Protocol, eof: bool = False) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        buf, self.buf = self.buf, b""
        if proto is Protocol.HTTP1:
            serve_http1(self.transport, self.ctx, buf)
        elif proto is Protocol.HTTP2:
            serve_http2(self.transport, self.ctx, buf)
        else:
            serve_opaque(self.transport, self.ctx, buf, eof)
