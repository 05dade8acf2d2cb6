"""HTTP/2 (h2c prior knowledge, gRPC) forwarding: accepted connections and per-request routing.

Each request stream is routed on its own (``:authority`` through ``ctx.router``) onto a shared,
multiplexed upstream connection from an :class:`H2Pool`; frames are forwarded without an HTTP/2
state machine library (see ``weft.proxy.h2``). RST_STREAM is passed on with its error code, to
the other side's stream id. GOAWAY applies to the connection it arrived on, since upstream
connections are shared: from a client, its in-flight requests finish and the connection closes;
from a server, no new streams go there, and streams it never saw are reset to the client with
REFUSED_STREAM (safe to retry). Draining sends the client GOAWAY and closes once in-flight
exchanges are done.

Requests are held to what RFC 9113 asks of an intermediary (see ``weft.proxy.h2.connection`` for
stream states and flow control): a malformed request (§8.1.1: connection-specific fields, ``te``
other than ``trailers``, invalid field names or values, missing, duplicate, unknown or misplaced
pseudo-header fields, a body that contradicts ``content-length``) is reset with PROTOCOL_ERROR and
never forwarded. Accepted connections advertise SETTINGS_MAX_CONCURRENT_STREAMS
(``*_SERVER_HTTP2_MAX_CONCURRENT_STREAMS``) and refuse streams beyond it with REFUSED_STREAM; past
the listener's ``*_MAX_IN_FLIGHT`` requests, the proxy answers 503 (gRPC UNAVAILABLE) itself.

Metrics: ``request_total`` when request headers arrive; ``response_total`` and
``response_latency_ms`` when the response's END_STREAM arrives (status from the response head,
``grpc_status`` from trailers or a trailers-only head). A response the proxy answers itself (no
route, connect failure, upstream lost before a response head) is counted with the status it
sent. An exchange ended by RST_STREAM, in either direction, or by a connection loss after the
response head is counted with ``error="<h2 error code name>"`` (``cancel``,
``refused_stream``, ``internal_error``, ...) and the response head's status, or 0 if none
had arrived; a malformed request is counted so too (``protocol_error``, status 0). Streams
refused with REFUSED_STREAM were never requests, and are not counted.

A request carrying ``l5d-orig-proto`` (an HTTP/1 request a meshed client proxy sent as HTTP/2)
goes to its endpoint as HTTP/1 instead (``weft.proxy.downgrade``), and is answered as plain HTTP.

Tap (``weft.proxy.tap``): a request is offered to the taps when its first attempt is sent (or
when the proxy answers it itself), only while ``ctx.taps.active``; a tapped exchange reports the
response head the client gets, its body bytes (counted by the upstream leg's keeper) and its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import lru_cache, partial

from weft.proxy import downgrade
from weft.proxy.context import ConnContext
from weft.proxy.discovery import Endpoint
from weft.proxy.dispatch import Dispatch
from weft.proxy.errors import (
    ProxyError,
    max_in_flight,
    no_endpoints,
    route_timeout,
    streams_exhausted,
)
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.connection import (
    ENDED,
    IDLE,
    NEVER_OPENED,
    Chunk,
    Exchange,
    H2Conn,
    Leg,
    flush_all,
)
from weft.proxy.h2.heads import Head, block_fields
from weft.proxy.h2.hpack_codec import Field, encode_field
from weft.proxy.h2.pool import ClientConn, H2Pool
from weft.proxy.orig_proto import orig_version
from weft.proxy.tap.registry import Fields, Tapped

__all__ = ["H2Pool", "ServerConn", "serve_http2"]

log = logging.getLogger("weft.proxy.http2")

INITIAL_WAIT = 1.0  # seconds, at most, a request waits for discovery's first answer


@lru_cache(maxsize=256)
def request_fields(block: bytes) -> tuple[Field, ...]:
    """A forwarded request block's fields, for tap: a steady client repeats the same blocks."""
    return tuple(block_fields(block))


class TapCounter:
    """The keeper of a tapped response's upstream leg: counts its body bytes, keeps its
    trailers (see :class:`~weft.proxy.h2.connection.Keeper`)."""

    __slots__ = ("tap",)

    def __init__(self, tap: Tapped) -> None:
        self.tap = tap

    def keep(self, data: Chunk) -> None:
        """Count response body bytes."""
        self.tap.response_bytes += len(data)

    def trailers(self, block: bytes) -> None:
        """Keep the response trailers, decoded if a tap asks for them."""
        self.tap.trailers = partial(block_fields, block)


class ServerConn(H2Conn):
    """An accepted HTTP/2 connection: every request stream becomes an exchange."""

    def __init__(self, ctx: ConnContext) -> None:
        super().__init__(ctx.config, ctx.stats)
        self.ctx = ctx
        self.pool = ctx.h2_pool
        self.in_flight = ctx.in_flight
        self.draining = False
        self.max_streams = ctx.dcfg.h2_max_concurrent_streams
        # Stream ids the client skipped (never opened), as (lo, hi) bounds, exclusive.
        self.skipped: list[tuple[int, int]] = []
        cid = ctx.client_id
        self.client_id_field = encode_field(b"l5d-client-id", cid.encode()) if cid else b""
        self.write(self.local_settings((fr.SETTINGS_MAX_CONCURRENT_STREAMS, self.max_streams)))

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
        self.in_flight.count -= 1  # an accepted stream is a request in flight while it is open
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
            self.forward_trailers(leg, head, end)
            return
        last = self.last_sid  # what opens() does, inline: this is every request's path
        if sid <= last or not sid & 1:
            self.stray_headers(sid)
            return
        if sid > last + 2:
            self.skipped_ids(last, sid)
        self.last_sid = sid
        if self.draining or self.closing:
            self.refuse(sid, fr.REFUSED_STREAM)
        elif head.request_error or (end and head.content_length > 0):
            self.refuse_malformed(sid, head)
        elif len(self.streams) >= self.max_streams:  # RFC 9113 §5.1.2
            self.refuse(sid, fr.REFUSED_STREAM)
        else:
            self.open_exchange(sid, head, end)

    def opens(self, sid: int) -> bool:
        """An odd id above every id the client used opens a stream; ids it skipped are closed."""
        last = self.last_sid
        if sid <= last or not sid & 1:
            return False
        if sid > last + 2:
            self.skipped_ids(last, sid)
        self.last_sid = sid
        return True

    def skipped_ids(self, last: int, sid: int) -> None:
        """The client opened ``sid`` right after ``last``: the ids between are closed unused."""
        skipped = self.skipped
        skipped.append((last, sid))
        if len(skipped) > 16:
            del skipped[0]

    def unopened_state(self, sid: int) -> int:
        if sid > self.last_sid or not sid & 1:
            return IDLE  # even ids are the server's, and it opens none (no push)
        for lo, hi in self.skipped:
            if lo < sid < hi:
                return NEVER_OPENED
        return ENDED

    def refuse_malformed(self, sid: int, head: Head) -> None:
        """A malformed request (RFC 9113 §8.1.1): RST_STREAM(PROTOCOL_ERROR), never forwarded,
        counted as a request the proxy answered with that reset."""
        reason = head.request_error or "content-length with an empty body"
        log.info("%s: malformed http/2 request: %s", self.ctx.direction, reason)
        self.refuse(sid, fr.PROTOCOL_ERROR)
        ctx = self.ctx
        now = time.monotonic()
        stats = ctx.metrics.http.endpoint(head.label, ctx.base_labels)
        stats.request(now)
        stats.response(now, 0.0, 0, "failure", None, fr.error_name(fr.PROTOCOL_ERROR))

    def open_exchange(self, sid: int, head: Head, end: bool) -> None:
        """Track a new request stream, route it and open its stream upstream (or answer it at
        once when the listener's requests in flight are at their limit)."""
        ctx = self.ctx
        now = time.monotonic()
        block = head.block + self.client_id_field if self.client_id_field else head.block
        exchange = Exchange(now, head, block)
        if head.orig_proto:
            exchange.grpc = False  # an HTTP/1 request: plain HTTP errors, whatever its type
        down = Leg(self, sid, exchange, self.peer_window, end)
        down.remaining = head.content_length
        self.streams[sid] = down
        in_flight = self.in_flight
        in_flight.count += 1  # until the stream leaves ``streams`` (stream_closed)
        if in_flight.count > in_flight.limit:
            exchange.stats = ctx.metrics.http.endpoint(head.label, ctx.base_labels)
            exchange.stats.request(now)
            self.respond_error(down, max_in_flight(in_flight.limit))
            return
        logical = exchange.logical = ctx.router.logical(head.name, ctx.target)
        first = logical.waiting()
        if first is not None:  # discovery has not answered for this destination yet
            self.wait(down, first, INITIAL_WAIT, self.route)
            return
        self.route(down)

    def route(self, down: Leg) -> None:
        """Apply the destination's profile to ``down``'s request, then send it."""
        exchange = down.exchange
        logical = exchange.logical
        assert logical is not None
        profile = logical.profile
        now = time.monotonic()
        if profile.name or profile.routes:
            head = exchange.head
            method = head.method.decode("latin-1")
            path = head.path.decode("latin-1")
            ctx = self.ctx
            d = exchange.dispatch = Dispatch(
                ctx.direction, ctx.metrics, logical, method, path, exchange.start
            )
            if d.replay is not None:
                down.keep = d
                # Frames that arrived while the request waited for discovery are kept too.
                if down.early:
                    for payload, _end, is_headers in down.early:
                        if is_headers:
                            d.replay = None
                        else:
                            d.keep(payload)
            timeout = d.timeout
            if timeout is not None:
                exchange.timer = self.ctx.deadlines.call_later(now, timeout, self.timed_out, down)
        self.attempt(down, now + self.ctx.dcfg.dispatch_timeout)

    def attempt(self, down: Leg, deadline: float, retry: bool = False) -> None:
        """Pick an endpoint for ``down``'s request and open its stream there."""
        ctx = self.ctx
        exchange = down.exchange
        logical = exchange.logical
        assert logical is not None
        now = time.monotonic()
        try:
            load = logical.pick(ctx.target, exchange.head.label or None)
            if load is None:
                changed = logical.changed()
                if changed is not None and now < deadline:  # no endpoints yet: wait for some
                    then = partial(self.attempt, deadline=deadline, retry=retry)
                    self.wait(down, changed, deadline - now, then)
                    return
                raise no_endpoints(logical.name or exchange.head.label)
            upstream: ClientConn | downgrade.AppConn | None
            if exchange.head.orig_proto and orig_version(exchange.head.orig_proto):
                upstream = downgrade.acquire(ctx, load.endpoint)
            else:
                upstream = self.pool.acquire(load.endpoint, ctx)
            if upstream is None:  # every connection there is at the server's stream limit
                if now < deadline:
                    then = partial(self.attempt, deadline=deadline, retry=retry)
                    self.wait(down, self.pool.room(load.endpoint), deadline - now, then)
                    return
                raise streams_exhausted(load.endpoint.addr)
        except ProxyError as err:
            if exchange.stats is None:
                exchange.stats = ctx.metrics.http.endpoint(exchange.head.label, ctx.base_labels)
                exchange.stats.request(now)
            down.early = None
            self.respond_error(down, err)
            return
        endpoint = load.endpoint
        load.start()
        exchange.load = load
        exchange.attempt_start = now
        exchange.status = 0
        exchange.grpc_status = None
        stats = exchange.stats = ctx.metrics.http.endpoint(
            exchange.head.label, ctx.request_labels(endpoint)
        )
        stats.request(now)
        if exchange.dispatch is not None:
            exchange.dispatch.attempt(now)
        up = upstream.open_leg(exchange)
        down.peer = up
        up.peer = down
        if ctx.taps.active and exchange.tap is None:
            tap = exchange.tap = self.observe(exchange, endpoint, now)
            if tap is not None:
                up.keep = TapCounter(tap)
        chunks: list[tuple[bytes, bool, bool]] | None
        if retry:
            assert exchange.dispatch is not None and exchange.dispatch.replay is not None
            if exchange.tap is not None and up.keep is None:
                up.keep = TapCounter(exchange.tap)  # the tapped response may come from here
            chunks = [(payload, False, False) for payload in exchange.dispatch.replay]
            if chunks:
                chunks.append((b"", True, False))
                down.precredited += exchange.dispatch.replay_bytes
        else:
            chunks, down.early = down.early, None
        if not chunks:
            upstream.write_headers(up, exchange.block, down.recv_done)
            return
        upstream.write_headers(up, exchange.block, False)
        for payload, end, is_headers in chunks:
            if is_headers:
                upstream.send_headers(up, payload, end)
            else:
                upstream.send_data(up, payload, end, down)

    def observe(self, exchange: Exchange, endpoint: Endpoint | None, now: float) -> Tapped | None:
        """Offer ``exchange``'s request to the proxy's taps (called only while one is active)."""
        head = exchange.head
        dispatch = exchange.dispatch
        ctx = self.ctx
        scheme = None  # from the fields' :scheme
        if head.orig_proto:  # the app gets it as HTTP/1: tap reports that request
            cid = ctx.client_id.encode() if ctx.client_id else None
            fields: Callable[[], Fields] = partial(downgrade.tap_fields, head, cid)
            scheme = next((v for n, v in head.fields if n == b":scheme"), b"http").decode()
        else:
            fields = partial(request_fields, exchange.block)
        return ctx.observe(
            endpoint,
            head.method.decode("latin-1"),
            scheme,
            head.authority or "",
            head.path.decode("latin-1"),
            fields,
            dispatch.route if dispatch is not None else None,
            now,
        )

    def respond_error(self, leg: Leg, err: ProxyError) -> None:
        """Answer with the proxy's own error; a request not offered to the taps yet (no
        endpoint was chosen for it) is offered now."""
        exchange = leg.exchange
        if exchange.tap is None and self.ctx.taps.active and not exchange.done:
            exchange.tap = self.observe(exchange, None, time.monotonic())
        super().respond_error(leg, err)

    def retry(self, down: Leg) -> None:
        """Send ``down``'s request again: its last attempt failed and its route allows it."""
        self.attempt(down, time.monotonic() + self.ctx.dcfg.dispatch_timeout, retry=True)

    def wait(
        self,
        down: Leg,
        future: asyncio.Future[None],
        timeout: float,
        then: Callable[[Leg], None],
    ) -> None:
        """Hold ``down``'s request (its frames kept, uncredited) until ``future`` completes or
        ``timeout`` passes, then call ``then``."""
        if down.early is None:
            down.early = []
        loop = asyncio.get_running_loop()
        fired = False

        def fire(_: object = None) -> None:
            nonlocal fired
            if fired:
                return
            fired = True
            timer.cancel()
            if not down.closed and not down.exchange.done and not self.closing:
                then(down)
                flush_all()

        timer = loop.call_later(max(timeout, 0.0), fire)
        future.add_done_callback(fire)

    def timed_out(self, down: Leg) -> None:
        """The route's timeout expired: 504 (or DEADLINE_EXCEEDED) unless a response began."""
        exchange = down.exchange
        exchange.timer = None
        if exchange.done or exchange.status or down.closed:
            return
        d = exchange.dispatch
        down.early = None
        self.respond_error(down, route_timeout(d.timeout if d is not None and d.timeout else 0.0))
        flush_all()


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
