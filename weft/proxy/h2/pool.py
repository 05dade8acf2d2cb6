"""Upstream HTTP/2 connections: long-lived, multiplexed, shared by every accepted connection.

The server's SETTINGS_MAX_CONCURRENT_STREAMS is honoured: a request goes on a connection with
room for one more stream; when every connection to the endpoint is at the limit another is
dialled, up to :data:`MAX_CONNS_PER_ENDPOINT`, and past that the request waits for a stream to
close (up to the dispatch timeout). Before a new connection's SETTINGS arrive, the endpoint's
last known limit is assumed, else :data:`INITIAL_MAX_STREAMS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from weft.proxy.context import ConnContext
from weft.proxy.discovery import Endpoint
from weft.proxy.errors import connect_error, errno_label, malformed_response, upstream_reset
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.connection import ENDED, IDLE, Exchange, H2Conn, Leg, flush_all
from weft.proxy.h2.heads import Head, block_fields

log = logging.getLogger("weft.proxy.http2")

# Streams opened on a new connection before the server's SETTINGS say how many it allows (as
# hyper's client does), when the endpoint's limit is not known from an earlier connection.
INITIAL_MAX_STREAMS = 100
MAX_CONNS_PER_ENDPOINT = 8
KNOWN_LIMITS = 1024  # endpoints whose stream limit is remembered


class ClientConn(H2Conn):
    """A prior-knowledge h2c connection the proxy dialled to one endpoint address.

    Streams may be opened before the connection is up: their frames wait in ``out`` (and the
    stream credit of what they carry is held) until ``connection_made``.
    """

    upstream = True
    peer_error = fr.INTERNAL_ERROR  # a stream error here is the server's fault, not the client's

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
        # Until its SETTINGS arrive, assume the server limits streams as it did last time (one
        # stream at least: a new connection is how a limit of 0 is seen to change).
        self.peer_max_streams = max(1, pool.stream_limits.get(endpoint, INITIAL_MAX_STREAMS))
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
        if self.dialing is not None and self.transport is None:  # not connected yet
            self.dialing.cancel()
            self.dialing = None
            self.connect_failed(ConnectionAbortedError("connection pool closed"))
            return
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if not self.closing and not self.failed:
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
        if self.pool.waiting:
            self.pool.wake(self.endpoint)
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

    def unopened_state(self, sid: int) -> int:
        return IDLE if sid >= self.next_sid or not sid & 1 else ENDED

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        head = self.head_of(block)
        leg = self.streams.get(sid)
        if leg is None:
            self.stray_headers(sid)
            return
        exchange = leg.exchange
        if exchange.status >= 200:  # trailers
            if head.grpc_status is not None:
                exchange.grpc_status = head.grpc_status
            self.forward_trailers(leg, head, end)
            if end:
                exchange.finish()
            return
        if head.response_error:
            self.malformed(leg, head.response_error)
            return
        status = head.status
        length = head.content_length
        if length >= 0 and _has_body(status, exchange.head.method):
            if end and length:
                self.malformed(leg, "content-length with an empty body")
                return
            leg.remaining = length
        exchange.status = status
        if status >= 200:
            d = exchange.dispatch
            down = leg.peer
            if (
                d is not None
                and d.replay is not None
                and down is not None
                and down.recv_done
                and d.retry(status, head.grpc_status, time.monotonic())
            ):
                self.retry_response(leg, down, head)
                return
            if exchange.tap is not None:
                fields = partial(block_fields, head.block)
                exchange.tap.response_init(time.monotonic(), status, fields)
        if head.grpc_status is not None:
            exchange.grpc_status = head.grpc_status
        self.forward_headers(leg, head, end)
        if end:
            exchange.finish()

    def malformed(self, leg: Leg, reason: str) -> None:
        """A malformed response: reset upstream; the client gets the proxy's 502 if no response
        head has reached it, else its stream is reset."""
        log.info("malformed http/2 response from %s:%s: %s", *self.addr, reason)
        down = leg.peer
        if leg.exchange.status >= 200 or down is None:
            self.reset_exchange(leg, fr.PROTOCOL_ERROR, fr.INTERNAL_ERROR)
            return
        leg.peer = down.peer = None
        self.reset_leg(leg, fr.PROTOCOL_ERROR)
        down.conn.respond_error(down, malformed_response(reason))

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
        if (fr.SETTINGS_ENABLE_PUSH, 1) in settings:  # RFC 9113 §6.5.2
            raise fr.H2Error(fr.PROTOCOL_ERROR, "a server may not enable push")
        before = self.peer_max_streams
        if not self.settled:  # the server's first SETTINGS: what it leaves out is unlimited
            self.settled = True
            self.peer_max_streams = fr.MAX_STREAM_ID
        super().on_settings(settings)
        self.pool.learned(self.endpoint, self.peer_max_streams)
        if self.peer_max_streams > before and self.pool.waiting:
            self.pool.wake(self.endpoint)

    def on_goaway(self, last_sid: int, code: int) -> None:
        """No new streams here; streams the server never saw are refused so clients retry."""
        self.goaway_received = True
        self.pool.forget(self)
        for sid, leg in list(self.streams.items()):
            if sid > last_sid:
                self.reset_exchange(leg, -1, fr.REFUSED_STREAM)
        if not self.streams:
            self.close()


def _has_body(status: int, method: bytes) -> bool:
    """Whether a response's body must match its content-length: all but 1xx, 204, 304 and
    answers to HEAD (RFC 9110 §6.4.1)."""
    return status >= 200 and status not in (204, 304) and method != b"HEAD"


class H2Pool:
    """The upstream connections of one listener, by endpoint."""

    def __init__(self) -> None:
        self.conns: dict[Endpoint, list[ClientConn]] = {}
        # The last SETTINGS_MAX_CONCURRENT_STREAMS seen from each endpoint (the most recent
        # KNOWN_LIMITS endpoints).
        self.stream_limits: dict[Endpoint, int] = {}
        # Per endpoint, what requests waiting for a stream there wait on.
        self.waiting: dict[Endpoint, asyncio.Future[None]] = {}

    def acquire(self, endpoint: Endpoint, ctx: ConnContext) -> ClientConn | None:
        """A connection to ``endpoint`` with room for one more stream (dialled if there is none
        and the endpoint has fewer than MAX_CONNS_PER_ENDPOINT); None if every one is full."""
        conns = self.conns.get(endpoint)
        if conns is None:
            conns = self.conns[endpoint] = []
        for conn in conns:
            if conn.usable():
                return conn
        if len(conns) >= MAX_CONNS_PER_ENDPOINT:
            return None
        conn = ClientConn(self, endpoint, ctx)
        conns.append(conn)
        conn.dial()
        return conn

    def room(self, endpoint: Endpoint) -> asyncio.Future[None]:
        """Completes when a connection to ``endpoint`` may have room for a stream again."""
        future = self.waiting.get(endpoint)
        if future is None:
            future = self.waiting[endpoint] = asyncio.get_running_loop().create_future()
        return future

    def wake(self, endpoint: Endpoint) -> None:
        """A stream to ``endpoint`` closed, or a connection to it went: wake who waits for one."""
        future = self.waiting.pop(endpoint, None)
        if future is not None and not future.done():
            future.set_result(None)

    def learned(self, endpoint: Endpoint, limit: int) -> None:
        """Remember ``endpoint``'s SETTINGS_MAX_CONCURRENT_STREAMS for its next connections."""
        limits = self.stream_limits
        limits.pop(endpoint, None)
        limits[endpoint] = limit
        if len(limits) > KNOWN_LIMITS:
            del limits[next(iter(limits))]

    def forget(self, conn: ClientConn) -> None:
        """Stop handing out ``conn``."""
        conns = self.conns.get(conn.endpoint)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.conns[conn.endpoint]
            self.wake(conn.endpoint)

    def close(self) -> None:
        """Close every connection (their open exchanges are ended)."""
        for conns in list(self.conns.values()):
            for conn in list(conns):
                conn.close()
        self.conns.clear()
        flush_all()
