"""Upstream HTTP/2 connections: long-lived, multiplexed, shared by every accepted connection."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from weft.proxy.context import ConnContext
from weft.proxy.discovery import Endpoint
from weft.proxy.errors import connect_error, errno_label, upstream_reset
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.connection import Exchange, H2Conn, Leg, flush_all
from weft.proxy.h2.heads import Head, block_fields

log = logging.getLogger("weft.proxy.http2")


class ClientConn(H2Conn):
    """A prior-knowledge h2c connection the proxy dialled to one endpoint address.

    Streams may be opened before the connection is up: their frames wait in ``out`` (and the
    stream credit of what they carry is held) until ``connection_made``.
    """

    upstream = True

    def __init__(self, pool: H2Pool, endpoint: Endpoint, ctx: ConnContext) -> None:
        super().__init__(ctx.config, ctx.dst_conn_stats(endpoint))
        self.pool = pool
        self.endpoint = endpoint
        self.addr = endpoint.addr
        self.dialer = ctx.dialer
        self.connect_timeout = ctx.dcfg.connect_timeout
        self.idle_timeout = ctx.dcfg.pool_idle_timeout
        self.loop = asyncio.get_running_loop()
        self.next_sid = 1
        self.goaway_received = False
        self.idle_since = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.dialing: asyncio.Task[None] | None = None
        # Until its SETTINGS arrive, assume the server limits streams as it did last time.
        self.peer_max_streams = pool.stream_limits.get(endpoint, fr.MAX_STREAM_ID)
        self.settled = False
        self.write(fr.PREFACE + self.local_settings())

    def usable(self) -> bool:
        """Whether a new stream may be opened here."""
        return (
            not self.closing
            and not self.goaway_received
            and len(self.streams) < self.peer_max_streams
            and self.next_sid < fr.MAX_STREAM_ID
        )

    def open_leg(self, exchange: Exchange) -> Leg:
        """A new stream for ``exchange`` (its HEADERS are the caller's next write)."""
        sid = self.next_sid
        self.next_sid = sid + 2
        leg = Leg(self, sid, exchange, self.peer_window, False)
        self.streams[sid] = leg
        return leg

    def dial(self) -> None:
        """Start connecting (bounded by the connect timeout)."""
        self.dialing = self.loop.create_task(self._dial())

    async def _dial(self) -> None:
        try:
            await self.dialer.connect(lambda: self, self.endpoint, self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.connect_failed(exc)
        finally:
            self.dialing = None

    def connect_failed(self, exc: BaseException) -> None:
        """Every exchange waiting here gets the proxy's connect error."""
        self.stats.close(errno_label(exc))
        self.closing = True
        self.pool.forget(self)
        err = connect_error(exc, self.addr)
        log.info("%s", err.reason)
        for leg in list(self.streams.values()):
            self.discard_leg(leg)
            peer = leg.peer
            if peer is not None:
                peer.conn.respond_error(peer, err)
        self.out.clear()
        flush_all()

    def close(self) -> None:
        if self.dialing is not None:
            self.dialing.cancel()
            self.dialing = None
            self.connect_failed(ConnectionAbortedError("connection pool closed"))
            return
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if not self.closing:
            self.write(fr.goaway(0, fr.NO_ERROR))
        super().close()

    def release_streams(self, exc: Exception | None) -> None:
        """Exchanges still here: an error response if no response head came, else a reset."""
        self.pool.forget(self)
        detail = str(exc) if exc is not None else "connection closed"
        for leg in list(self.streams.values()):
            self.discard_leg(leg)
            peer = leg.peer
            if peer is None or peer.closed:
                continue
            exchange = leg.exchange
            if exchange.status < 200:
                peer.conn.respond_error(peer, upstream_reset(detail))
            elif leg.recv_done:
                peer.conn.reset_after_end(peer)
            else:
                peer.conn.reset_leg(peer, fr.INTERNAL_ERROR)
                exchange.finish(fr.error_name(fr.INTERNAL_ERROR))

    def stream_closed(self) -> None:
        if self.streams or self.closing:
            return
        if self.goaway_received:
            self.close()
            return
        self.idle_since = time.monotonic()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_later(self.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.streams or self.closing:
            return
        left = self.idle_since + self.idle_timeout - time.monotonic()
        if left > 0:
            self.idle_timer = self.loop.call_later(left, self._idle_check)
            return
        self.close()
        flush_all()

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        head = self.head_of(block)
        leg = self.streams.get(sid)
        if leg is None:
            return  # a stream we reset meanwhile
        exchange = leg.exchange
        if head.status:
            exchange.status = head.status
            d = exchange.dispatch
            down = leg.peer
            if (
                d is not None
                and d.replay is not None
                and down is not None
                and down.recv_done
                and d.retry(head.status, head.grpc_status, time.monotonic())
            ):
                self.retry_response(leg, down, head)
                return
            if exchange.tap is not None and head.status >= 200:
                fields = partial(block_fields, head.block)
                exchange.tap.response_init(time.monotonic(), head.status, fields)
        if head.grpc_status is not None:
            exchange.grpc_status = head.grpc_status
        self.forward_headers(leg, head, end)
        if end:
            exchange.finish()

    def retry_response(self, leg: Leg, down: Leg, head: Head) -> None:
        """Drop ``leg``'s failed response (counted as its attempt) and send the request again."""
        exchange = leg.exchange
        exchange.grpc_status = head.grpc_status
        exchange.attempt_done(time.monotonic())
        leg.peer = None
        down.peer = None
        self.reset_leg(leg, fr.CANCEL)
        down.conn.retry(down)

    def on_settings(self, settings: list[tuple[int, int]]) -> None:
        if not self.settled:  # the server's first SETTINGS: what it leaves out is unlimited
            self.settled = True
            self.peer_max_streams = fr.MAX_STREAM_ID
        super().on_settings(settings)
        self.pool.stream_limits[self.endpoint] = self.peer_max_streams

    def on_goaway(self, last_sid: int, code: int) -> None:
        """No new streams here; streams the server never saw are refused so clients retry."""
        self.goaway_received = True
        self.pool.forget(self)
        for sid, leg in list(self.streams.items()):
            if sid > last_sid:
                self.reset_exchange(leg, -1, fr.REFUSED_STREAM)
        if not self.streams:
            self.close()


class H2Pool:
    """The upstream connections of one listener, by endpoint."""

    def __init__(self) -> None:
        self.conns: dict[Endpoint, list[ClientConn]] = {}
        # The last SETTINGS_MAX_CONCURRENT_STREAMS seen, while the endpoint has connections.
        self.stream_limits: dict[Endpoint, int] = {}

    def acquire(self, endpoint: Endpoint, ctx: ConnContext) -> ClientConn:
        """A connection to ``endpoint`` with room for one more stream (dialled if there is none)."""
        conns = self.conns.get(endpoint)
        if conns is None:
            conns = self.conns[endpoint] = []
        for conn in conns:
            if conn.usable():
                return conn
        conn = ClientConn(self, endpoint, ctx)
        conns.append(conn)
        conn.dial()
        return conn

    def forget(self, conn: ClientConn) -> None:
        """Stop handing out ``conn``."""
        conns = self.conns.get(conn.endpoint)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.conns[conn.endpoint]
                self.stream_limits.pop(conn.endpoint, None)

    def close(self) -> None:
        """Close every connection (their open exchanges are ended)."""
        for conns in list(self.conns.values()):
            for conn in list(conns):
                conn.close()
        self.conns.clear()
        flush_all()
