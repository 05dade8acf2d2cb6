"""Inbound: an HTTP/2 request carrying ``l5d-orig-proto`` (an HTTP/1.x request a meshed client
proxy upgraded) goes to the app as HTTP/1.x on a keep-alive connection, and the app's response
goes back as HTTP/2 with ``l5d-orig-proto`` (Linkerd's orig-proto downgrade).

:class:`AppConn` is one HTTP/1 connection to the app. It carries one request at a time and is
the owner of that request's upstream leg, so the accepted HTTP/2 connection
(:class:`~weft.proxy.http2.ServerConn`) uses it as it uses an upstream HTTP/2 connection: the
request's HEADERS, DATA and END_STREAM arrive through ``write_headers``/``send_data``/
``send_headers``, and the response is sent to the leg's peer with ``send_headers``/``send_data``.
The exchange counts the request as the HTTP/2 path does, with the status of the app's response
and no gRPC status, so it is labelled as HTTP/1 traffic.

- The head comes from the decoded fields (``weft.proxy.orig_proto``): ``:authority`` becomes
  ``Host``, ``l5d-client-id`` is the verified client identity; a body without
  ``content-length`` is sent chunked. DATA beyond the ``content-length``, or END_STREAM short of
  it, resets the stream and closes the connection: the app never reads another request out of a
  body.
- The response head and the first body bytes go in one write where they arrive together, and
  the last DATA carries END_STREAM (a ``HEAD``, 204 or 304 response ends on its HEADERS).
- Back-pressure: the request's stream credit is held while this connection's transport is full
  (or not connected yet); response bytes the client's stream has no window for pause reading
  from the app above 64 KiB.
- A connection comes from the listener's pool (``ctx.downgrade_pool``) and goes back to it when
  both messages are complete and neither side asked to close; one taken from the pool that the
  app closed before answering a request without a body sends it again on a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, NamedTuple, cast

import httptools

from weft.proxy import h1head, orig_proto
from weft.proxy.errors import (
    GRPC_INTERNAL,
    ProxyError,
    connect_error,
    errno_label,
    upstream_reset,
)
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.connection import (
    Chunk,
    CreditHolder,
    Exchange,
    Leg,
    defer_flush,
    flush_all,
    release_credit,
)
from weft.proxy.h2.heads import Head
from weft.proxy.h2.hpack_codec import encode_block

if TYPE_CHECKING:
    from weft.proxy.context import ConnContext
    from weft.proxy.discovery import Endpoint

log = logging.getLogger("weft.proxy.downgrade")

HIGH_WATER = 65536  # response bytes the client's stream has not taken that pause the app
LOW_WATER = 16384  # ... and resume it
CACHE_SIZE = 256  # entries of each head cache

_requests: dict[tuple[bytes, bytes, bytes | None, bool], orig_proto.Request] = {}


def request_of(head: Head, client_id: bytes | None, has_body: bool) -> orig_proto.Request:
    """The HTTP/1 form of a decoded request head (cached per block: clients repeat their
    heads). Raises :class:`~weft.proxy.orig_proto.MalformedHead`."""
    key = (head.block, head.orig_proto, client_id, has_body)
    found = _requests.get(key)
    if found is None:
        version = orig_proto.orig_version(head.orig_proto) or b"1.1"
        found = orig_proto.request_head(head.fields, version, client_id, has_body)
        if len(_requests) >= CACHE_SIZE:
            _requests.clear()
        _requests[key] = found
    return found


class AppResponse(NamedTuple):
    """An app's HTTP/1 response head as the client gets it: the HTTP/2 block, the end-to-end
    headers (for tap) and whether the body has its own end (a length, or chunked)."""

    block: bytes
    headers: h1head.Headers
    delimited: bool


_responses: dict[tuple[int, bytes, tuple[tuple[bytes, bytes], ...]], AppResponse] = {}


def response_of(status: int, version: bytes, headers: h1head.Headers) -> AppResponse:
    """The HTTP/2 form of an app's response head (cached: apps repeat theirs)."""
    key = (status, version, tuple(headers))
    found = _responses.get(key)
    if found is None:
        fwd = h1head.end_to_end(headers)
        block = encode_block(orig_proto.response_fields(status, fwd, version))
        delimited = h1head.header_value(
            headers, b"content-length"
        ) is not None or h1head.is_chunked(headers)
        found = AppResponse(block, fwd, delimited)
        if len(_responses) >= CACHE_SIZE:
            _responses.clear()
        _responses[key] = found
    return found


class SeenResponse(NamedTuple):
    """A response head the parser read whole, with its body, in one read: its facts (the same
    head bytes again, between two responses, are this head)."""

    status: int
    keep_alive: bool
    response: AppResponse
    length: int  # its content-length


# By the exact bytes of the head (see ``AppConn.data_received``).
_seen_responses: dict[bytes, SeenResponse] = {}
MAX_SEEN_HEAD = 2048  # bytes; heads are kept up to this size


def tap_fields(head: Head, client_id: bytes | None) -> h1head.Headers:
    """The header fields of the HTTP/1 request the app gets, as tap reports them."""
    try:
        return h1head.head_fields(request_of(head, client_id, False).head)
    except orig_proto.MalformedHead:
        return []


def acquire(ctx: ConnContext, endpoint: Endpoint) -> AppConn:
    """An idle connection to ``endpoint`` from the pool, else a new one (being dialled)."""
    conn: AppConn | None = ctx.downgrade_pool.take(endpoint)
    if conn is not None:
        conn.reused = True
        return conn
    conn = AppConn(ctx, endpoint)
    conn.dial()
    return conn


class AppConn(asyncio.Protocol):
    """An HTTP/1 connection to the app for requests that arrived as HTTP/2 with
    ``l5d-orig-proto`` (see the module docstring)."""

    transport: asyncio.Transport

    def __init__(self, ctx: ConnContext, endpoint: Endpoint) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.stats = ctx.dst_conn_stats(endpoint)
        self.parser = httptools.HttpResponseParser(self)
        self.in_message = False  # the parser has begun a response it has not finished
        self.heads = 0  # response heads parsed from the last read
        self.last_head: SeenResponse | None = None  # the last one's facts, if final
        self.body_read = 0  # body bytes of the response being parsed
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.dialing: asyncio.Task[None] | None = None
        self.connected = False
        self.closed = False
        self.reused = False
        self.out: list[Chunk] = []
        self.dirty = False
        self.paused = True  # CreditHolder: not connected yet, or the transport is full
        self.held: list[Leg] = []
        self.client_id = ctx.client_id.encode() if ctx.client_id else None
        # The request in flight.
        self.leg: Leg | None = None
        self.request: orig_proto.Request | None = None
        self.chunked = False
        self.remaining = -1  # request body bytes its content-length still announces
        self.request_done = False
        # Its response.
        self.headers: h1head.Headers = []
        self.status = 0
        self.keep_alive = True
        self.started = False  # the final response head was parsed
        self.head_block = b""  # the response HEADERS, sent with the first body bytes
        self.body_held: bytes | None = None  # the last body bytes, sent with END_STREAM
        self.unsent = 0  # response bytes handed to the client's stream, not yet sent
        self.reading_paused = False

    # -- the connection ----------------------------------------------------------------------

    def dial(self) -> None:
        """Connect to the app (requests written meanwhile wait in ``out``)."""
        self.dialing = asyncio.get_running_loop().create_task(self._dial())

    async def _dial(self) -> None:
        ctx = self.ctx
        try:
            await ctx.dialer.connect(lambda: self, self.endpoint, ctx.dcfg.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.stats.close(errno_label(exc))
            self.closed = True
            leg, self.leg = self.leg, None
            peer = leg.peer if leg is not None else None
            if peer is not None and not peer.closed:
                peer.conn.respond_error(peer, connect_error(exc, self.endpoint.addr))
            flush_all()
        finally:
            self.dialing = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connected = True
        if self.leg is None:  # the request went away while this connection was dialled
            self.transport.close()
            return
        self.resume_writing()
        self.flush()
        flush_all()

    def expire(self) -> None:
        """Idle timeout in the pool."""
        self.idle_timer = None
        self.transport.close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        release_credit(self)

    def write(self, data: Chunk) -> None:
        """Queue bytes for the app, written once at the end of the callback."""
        self.out.append(data)
        if not self.dirty:
            self.dirty = True
            defer_flush(self)

    def shared(self) -> bool:
        """No: it carries one request at a time."""
        return False

    def flush(self) -> None:
        """Write what was queued (kept until the connection is up)."""
        self.dirty = False
        if not self.connected or not self.out or self.closed:
            return
        data = b"".join(self.out)
        self.out.clear()
        self.stats.written += len(data)
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stats.close(errno_label(exc))
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.ctx.downgrade_pool.forget(self)
        if self.leg is not None:
            if self.started and not self.keep_alive:
                self.on_message_complete()  # a body delimited by the connection's end
            else:
                self._failed(str(exc) if exc else "connection closed before the response")
        flush_all()

    def eof_received(self) -> bool:
        if self.leg is not None and self.started and not self.keep_alive:
            self.on_message_complete()
        return False

    # -- the request (what ServerConn sends upstream) ----------------------------------------

    def open_leg(self, exchange: Exchange) -> Leg:
        """Take ``exchange``'s request (its head is the caller's next write)."""
        leg = Leg(self, 0, exchange, 0, False)
        self._take(leg)
        return leg

    def _take(self, leg: Leg) -> None:
        """Make ``leg`` the request in flight."""
        self.leg = leg
        self.request = None
        self.headers = []
        self.status = 0
        self.keep_alive = True
        self.started = False
        self.head_block = b""
        self.body_held = None
        self.unsent = 0
        self.request_done = False

    def write_headers(self, leg: Leg, block: bytes, end: bool) -> None:
        """Write the request head, from the exchange's decoded head (``block`` is its HTTP/2
        form); ``end``: it has no body."""
        try:
            request = request_of(leg.exchange.head, self.client_id, not end)
        except orig_proto.MalformedHead as exc:
            self._reject(leg, str(exc))
            return
        self.request = request
        self.chunked = request.chunked
        self.remaining = request.length
        self.write(request.head)
        if end:
            self._end_request(leg)

    def send_headers(self, leg: Leg, block: bytes, end: bool) -> None:
        """Request trailers: not carried (they end a chunked body)."""
        if end and leg is self.leg:
            self._end_request(leg)

    def send_data(self, leg: Leg, payload: Chunk, end: bool, src: Leg) -> None:
        """Request body bytes for the app; ``src``'s credit waits while this transport is full."""
        n = len(payload)
        if leg is not self.leg or self.request_done:
            src.conn.credit(src, n, None)
            return
        if n:
            if self.remaining >= 0:
                self.remaining -= n
                if self.remaining < 0:
                    src.conn.credit(src, n, None)
                    self._reject(leg, "more DATA than its content-length")
                    return
            self.write(h1head.chunk(payload) if self.chunked else payload)
        src.conn.credit(src, n, self)
        if end:
            self._end_request(leg)

    def _end_request(self, leg: Leg) -> None:
        if self.remaining > 0:
            self._reject(leg, "END_STREAM short of its content-length")
            return
        self.request_done = True
        if self.chunked:
            self.write(h1head.LAST_CHUNK)
        if leg.recv_done:  # the app answered before the request ended
            self._finished()

    def _reject(self, leg: Leg, reason: str) -> None:
        """A request the app must not get: 400 if nothing reached the app yet, else a reset;
        either way this connection closes."""
        self.leg = None
        self.out.clear()
        self._close()
        peer = leg.peer
        if peer is None or peer.closed:
            return
        if self.request is None:
            err = ProxyError(400, f"malformed request: {reason}", GRPC_INTERNAL)
            peer.conn.respond_error(peer, err)
        else:
            log.info("inbound request reset: %s", reason)
            peer.conn.reset_leg(peer, fr.PROTOCOL_ERROR)
            leg.exchange.finish(fr.error_name(fr.PROTOCOL_ERROR))

    # -- the request's end, seen from ServerConn ---------------------------------------------

    def reset_leg(self, leg: Leg, code: int) -> None:
        """The client reset the request (or left, or the proxy answered it): this connection
        cannot carry another request."""
        if leg is self.leg:
            self.leg = None
            self._close()

    def reset_after_end(self, leg: Leg) -> None:
        """The client sent its whole request, then RST_STREAM(NO_ERROR): it wants no answer."""
        self.reset_leg(leg, fr.NO_ERROR)

    def respond_error(self, leg: Leg, err: ProxyError) -> None:
        """Not called: the accepted side answers its requests."""
        raise NotImplementedError

    def retry(self, down: Leg) -> None:
        """Not called: requests are not retried inbound."""
        raise NotImplementedError

    def credit(self, leg: Leg, n: int, via: CreditHolder | None) -> None:
        """``n`` response bytes went to the client (held while its transport is full)."""
        if via is not None and via.paused and leg is self.leg:
            if not leg.held:
                via.held.append(leg)
            leg.held += n
        else:
            self.credit_stream(leg, n)

    def credit_stream(self, leg: Leg, n: int) -> None:
        """Response bytes left the proxy: resume the app below the low-water mark."""
        if leg is not self.leg:
            return
        self.unsent -= n
        if self.reading_paused and self.unsent <= LOW_WATER:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- the response ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.stats.read += len(data)
        leg = self.leg
        if leg is None:
            self._close()  # bytes nobody asked for
            return
        end = -1
        if not self.in_message:
            end = data.find(b"\r\n\r\n", 0, MAX_SEEN_HEAD) + 4
            seen = _seen_responses.get(data[:end]) if end > 3 else None
            if (
                seen is not None
                and len(data) - end == seen.length
                and leg.exchange.head.method != b"HEAD"
            ):
                # A whole response whose head the parser read before: taken as it would be.
                self._response_head(leg, seen.status, seen.keep_alive, seen.response)
                if seen.length:
                    self.body_held = data[end:]
                self.on_message_complete()
                flush_all()
                return
        self.heads = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._failed(f"malformed HTTP response: {exc}")
        else:
            seen = self.last_head
            if (
                end > 3
                and seen is not None
                and self.heads == 1
                and not self.in_message
                and len(data) - end == seen.length == self.body_read
            ):
                if len(_seen_responses) >= CACHE_SIZE:
                    _seen_responses.clear()
                _seen_responses[data[:end]] = seen
        if self.leg is not None and self.started:
            self._send_held(False)
        flush_all()

    def on_message_begin(self) -> None:
        self.in_message = True
        self.body_read = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.heads += 1
        self.last_head = None
        leg = self.leg
        if leg is None:
            return
        parser = self.parser
        status = parser.get_status_code()
        headers, self.headers = self.headers, []
        if status == 101:
            self._failed("the app switched protocols")
            return
        version = parser.get_http_version()
        response = response_of(status, b"1.1" if version == "1.1" else version.encode(), headers)
        if status < 200:
            self._to_client(leg, response.block, None, False)
            return
        keep_alive = parser.should_keep_alive()
        if status not in (204, 304) and leg.exchange.head.method != b"HEAD":
            length = h1head.header_value(headers, b"content-length")
            if length is not None and length.isdigit() and not h1head.is_chunked(headers):
                self.last_head = SeenResponse(status, keep_alive, response, int(length))
        self._response_head(leg, status, keep_alive, response)

    def _response_head(
        self, leg: Leg, status: int, keep_alive: bool, response: AppResponse
    ) -> None:
        """Take the app's final response head: it goes to the client with the first body bytes
        (at once when the response has no body)."""
        exchange = leg.exchange
        self.started = True
        self.status = exchange.status = status
        self.keep_alive = keep_alive
        no_body = exchange.head.method == b"HEAD" or status in (204, 304)
        if not no_body and not response.delimited:
            self.keep_alive = False  # the body ends with the connection
        if exchange.tap is not None:
            exchange.tap.response_init(time.monotonic(), status, response.headers.copy)
        self.head_block = response.block
        if no_body:
            self.parser = httptools.HttpResponseParser(self)
            self.in_message = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self.body_read += len(body)
        if self.leg is None or not self.started:
            return
        self._send_held(False)
        self.body_held = body

    def on_message_complete(self) -> None:
        self.in_message = False
        leg = self.leg
        if leg is None or not self.started or leg.recv_done:
            return
        self._send_held(True)
        leg.recv_done = True
        leg.exchange.finish()
        if self.request_done:
            self._finished()
            return
        # The app answered early: the client need not send the rest, and this connection cannot
        # carry another request (the app would read what is left of the body as one).
        self.leg = None
        self._close(abort=False)
        peer = leg.peer
        if peer is not None:
            peer.conn.reset_after_end(peer)

    def _send_held(self, end: bool) -> None:
        """Send the response HEADERS and body bytes held back (END_STREAM with the last)."""
        leg = self.leg
        assert leg is not None
        block, self.head_block = self.head_block, b""
        body, self.body_held = self.body_held, None
        self._to_client(leg, block, body, end)

    def _to_client(self, leg: Leg, block: bytes, body: bytes | None, end: bool) -> None:
        peer = leg.peer
        if peer is None or peer.closed:
            return
        if block:
            peer.conn.send_headers(peer, block, end and body is None)
        if body is not None:
            if leg.keep is not None:
                leg.keep.keep(body)
            self.unsent += len(body)
            peer.conn.send_data(peer, body, end, leg)
            if self.unsent > HIGH_WATER and not self.reading_paused and self.connected:
                self.reading_paused = True
                self.transport.pause_reading()
        elif end and not block:
            peer.conn.send_data(peer, b"", True, leg)

    def _finished(self) -> None:
        """Both messages are complete: back to the pool, or closed."""
        leg = self.leg
        if leg is not None:
            leg.peer = None  # the client's leg keeps its link: no reference cycle left
        self.leg = None
        self.request = None
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.keep_alive and not self.closed and not self.transport.is_closing():
            dcfg = self.ctx.dcfg
            self.reused = False
            self.ctx.downgrade_pool.put(self, dcfg.pool_idle_timeout, dcfg.max_idle_per_endpoint)
        else:
            self._close(abort=False)

    def _failed(self, detail: str) -> None:
        """The app's side failed: 502 if no response head went to the client, else a reset;
        a request without a body on a reused connection is sent again on a new one."""
        leg, self.leg = self.leg, None
        self._close()
        if leg is None:
            return
        peer = leg.peer
        if peer is None or peer.closed:
            return
        request = self.request
        if (
            self.reused
            and not self.started
            and request is not None
            and self.request_done
            and request.length <= 0
            and not request.chunked
        ):
            conn = AppConn(self.ctx, self.endpoint)
            conn.resend(leg, request)
            return
        if not self.started or self.head_block:
            peer.conn.respond_error(peer, upstream_reset(detail))
        else:
            peer.conn.reset_leg(peer, fr.INTERNAL_ERROR)
            leg.exchange.finish(fr.error_name(fr.INTERNAL_ERROR))

    def resend(self, leg: Leg, request: orig_proto.Request) -> None:
        """Carry ``leg``'s bodiless request, which a pooled connection lost, on this new one."""
        leg.conn = self
        self._take(leg)
        self.request = request
        self.request_done = True
        self.write(request.head)
        self.dial()

    def _close(self, abort: bool = True) -> None:
        """Close (``abort``: at once, dropping what is not written yet)."""
        if self.closed:
            return
        self.closed = True
        if self.connected:
            if abort:
                self.transport.abort()
            else:
                self.flush()
                self.transport.close()
