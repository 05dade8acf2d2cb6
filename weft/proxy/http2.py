"""HTTP/2 (h2c prior knowledge, gRPC) forwarding: accepted connections and per-request routing.

Each request stream is routed on its own (``:authority`` through ``ctx.router``) onto a shared,
multiplexed upstream connection from an :class:`H2Pool`; frames are forwarded without an HTTP/2
state machine library (see ``weft.proxy.h2``). RST_STREAM is passed on with its error code, to
the other side's stream id. GOAWAY applies to the connection it arrived on, since upstream
connections are shared: from a client, its in-flight requests finish and the connection closes;
from a server, no new streams go there, and streams it never saw are reset to the client with
REFUSED_STREAM (safe to retry). Draining sends the client GOAWAY and closes once in-flight
exchanges are done.

Metrics: ``request_total`` when request headers arrive; ``response_total`` and
``response_latency_ms`` when the response's END_STREAM arrives (status from the response head,
``grpc_status`` from trailers or a trailers-only head). A response the proxy answers itself (no
route, connect failure, upstream lost before a response head) is counted with the status it
sent. An exchange ended by RST_STREAM, in either direction, or by a connection loss after the
response head is counted with ``error="<h2 error code name>"`` (``cancel``,
``refused_stream``, ``internal_error``, ...) and the response head's status, or 0 if none
had arrived.
"""

from __future__ import annotations

import asyncio
import time

from weft.proxy.context import ConnContext
from weft.proxy.errors import ProxyError
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.connection import Exchange, H2Conn, Leg, flush_all
from weft.proxy.h2.heads import Head
from weft.proxy.h2.hpack_codec import encode_field
from weft.proxy.h2.pool import H2Pool
from weft.proxy.metrics import LabelPairs

__all__ = ["H2Pool", "ServerConn", "serve_http2"]


class ServerConn(H2Conn):
    """An accepted HTTP/2 connection: every request stream becomes an exchange."""

    def __init__(self, ctx: ConnContext) -> None:
        super().__init__(ctx.config, ctx.stats)
        self.ctx = ctx
        self.pool = ctx.h2_pool
        self.draining = False
        cid = ctx.client_id
        self.client_id_field = encode_field(b"l5d-client-id", cid.encode()) if cid else b""
        self.write(self.local_settings())

    # --- Drainable ----------------------------------------------------------------------------

    def drain(self) -> None:
        """GOAWAY now; close once the exchanges in flight have finished."""
        if self.draining or self.closing:
            return
        self.draining = True
        self.write(fr.goaway(self.last_sid, fr.NO_ERROR))
        if not self.streams:
            self.close()
        flush_all()

    def abort(self) -> None:
        """Close now."""
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.tracker.discard(self)
        super().connection_lost(exc)

    # --- H2Conn -------------------------------------------------------------------------------

    def release_streams(self, exc: Exception | None) -> None:
        """The client is gone: cancel what its exchanges still have upstream."""
        for leg in list(self.streams.values()):
            self.reset_exchange(leg, -1, fr.CANCEL)

    def stream_closed(self) -> None:
        if self.draining and not self.streams:
            self.close()

    def on_goaway(self, last_sid: int, code: int) -> None:
        """The client is leaving: finish what is in flight, then close."""
        self.draining = True
        if not self.streams:
            self.close()

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        head = self.head_of(block)
        leg = self.streams.get(sid)
        if leg is not None:
            self.forward_headers(leg, head, end)  # request trailers
        elif not sid & 1:
            raise fr.H2Error(fr.PROTOCOL_ERROR, f"client opened even stream {sid}")
        elif sid <= self.last_sid:
            self.write(fr.rst_stream(sid, fr.STREAM_CLOSED))
        else:
            self.last_sid = sid
            if self.draining or self.closing:
                self.write(fr.rst_stream(sid, fr.REFUSED_STREAM))
            else:
                self.open_exchange(sid, head, end)

    def open_exchange(self, sid: int, head: Head, end: bool) -> None:
        """Route a new request and open its stream upstream."""
        ctx = self.ctx
        try:
            endpoint = ctx.router.endpoint(head.authority, ctx.target)
        except ProxyError as err:
            self.respond_error(self.accept(sid, head, end, ctx.base_labels), err)
            return
        down = self.accept(sid, head, end, ctx.request_labels(endpoint))
        upstream = self.pool.acquire(endpoint, ctx)
        up = upstream.open_leg(down.exchange)
        down.peer = up
        up.peer = down
        block = head.block + self.client_id_field if self.client_id_field else head.block
        upstream.write_headers(up, block, end)

    def accept(self, sid: int, head: Head, end: bool, labels: LabelPairs) -> Leg:
        """Count the request under ``labels`` and track its stream."""
        ctx = self.ctx
        now = time.monotonic()
        stats = ctx.metrics.http.endpoint(head.label, labels)
        stats.request(now)
        down = Leg(self, sid, Exchange(stats, now, head.grpc), self.peer_window, end)
        self.streams[sid] = down
        return down


def serve_http2(transport: asyncio.Transport, ctx: ConnContext, initial: bytes) -> None:
    """Take over an accepted connection whose first bytes ``initial`` begin with the h2 preface.

    ``initial`` is taken as already counted in ``ctx.stats.read``; upstream connections come from
    the listener's shared ``ctx.h2_pool``.
    """
    conn = ServerConn(ctx)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    ctx.tracker.add(conn)
    rest = initial[len(fr.PREFACE) :]
    if rest and not conn.closing:
        try:
            conn.feed(rest)
        except fr.H2Error as err:
            conn.fail(err)
    flush_all()
    if not transport.is_reading():
        transport.resume_reading()
