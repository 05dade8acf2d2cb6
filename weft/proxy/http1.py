"""HTTP/1.1 forwarding: keep-alive on both sides, streamed bodies, upgrades, strict parsing.

A downstream connection (:class:`H1Server`) parses requests with httptools (llhttp, strict mode,
which rejects the request-smuggling vectors) and queues them as :class:`H1Exchange` objects; the
head of the queue is bound to a pooled upstream connection (:class:`H1Upstream`) that parses the
response and streams it back. Bodies are forwarded chunk by chunk with transport back-pressure.

A request to an endpoint that discovery hints is meshed (``h2``) goes to it as HTTP/2 on the
listener's shared connection instead (``weft.proxy.upgrade``, ``l5d-orig-proto``), unless it is
an ``Upgrade`` or ``CONNECT``; its exchange is the same, so routing, retries, timeouts, metrics
and tap treat it as any HTTP/1 request.

Tap (``weft.proxy.tap``): a request is offered to the taps when its first attempt is sent (or
when the proxy answers it itself), only while ``ctx.taps.active``; a tapped exchange reports the
response head the client gets (after retries), its body bytes and its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Generic, Protocol, TypeVar, cast

import httptools

from weft.proxy import h1head
from weft.proxy.balance import Load
from weft.proxy.classify import classify
from weft.proxy.context import ConnContext
from weft.proxy.deadlines import Deadline
from weft.proxy.discovery import Endpoint
from weft.proxy.dispatch import Dispatch, request_path
from weft.proxy.errors import (
    GRPC_INTERNAL,
    GRPC_RESOURCE_EXHAUSTED,
    ProxyError,
    connect_error,
    errno_label,
    max_in_flight,
    no_endpoints,
    route_timeout,
    streams_exhausted,
    upstream_reset,
)
from weft.proxy.h2.pool import ClientConn
from weft.proxy.metrics import ConnStats, EndpointStats
from weft.proxy.routing import Logical
from weft.proxy.tap.registry import Tapped
from weft.proxy.upgrade import Upgrade

log = logging.getLogger("weft.proxy.http1")

INITIAL_WAIT = 1.0  # seconds, at most, a request waits for discovery's first answer


class _HeadTooLarge(Exception):
    """Raised from a parser callback when a request head exceeds the limit."""


class H1Exchange:
    """One request and its response. ``pending`` holds body bytes (as received, not framed)
    waiting for an upstream; ``h2`` is the attempt in flight when it goes over HTTP/2."""

    __slots__ = (
        "admitted",
        "attempt_started",
        "authority",
        "chunked",
        "deadline",
        "dispatch",
        "h2",
        "has_body",
        "head",
        "head_request",
        "headers",
        "keep_alive",
        "known",
        "load",
        "logical",
        "method",
        "name",
        "pending",
        "request_done",
        "response_done",
        "response_started",
        "reused",
        "started",
        "stats",
        "tap",
        "timer",
        "tunnel",
        "upstream",
        "url",
        "version",
        "waiter",
    )

    def __init__(self) -> None:
        self.head = b""  # the head sent upstream over HTTP/1 (built on the first such attempt)
        self.headers: h1head.Headers = []  # the end-to-end header fields (never modified)
        self.known: h1head.RequestHead | None = None  # what they came from, if just these
        self.authority = ""
        self.name = ""  # l5d-dst-override, else the authority: the logical destination
        self.method = b""
        self.url = b""
        self.chunked = False
        self.has_body = False
        self.head_request = False
        self.keep_alive = True
        self.version = b"1.1"
        self.tunnel = False
        self.pending: list[bytes] = []
        self.request_done = False
        self.response_started = False
        self.response_done = False
        self.reused = False
        self.upstream: H1Upstream | None = None
        self.h2: Upgrade[H1Exchange] | None = None
        self.stats: EndpointStats | None = None
        self.started = 0.0
        self.attempt_started = 0.0
        self.logical: Logical | None = None
        self.dispatch: Dispatch | None = None
        self.load: Load | None = None  # the endpoint of the attempt in flight
        self.timer: Deadline | None = None
        self.waiter: asyncio.Task[None] | None = None
        self.deadline = 0.0  # when waiting for endpoints gives up
        self.tap: Tapped | None = None  # set only when a tap matched this request
        self.admitted = False  # counted in the listener's requests in flight


class Pooled(Protocol):
    """An upstream HTTP/1 connection that can wait in an :class:`H1Pool`."""

    endpoint: Endpoint
    transport: asyncio.Transport
    idle_timer: asyncio.TimerHandle | None
    idle_since: float  # time.monotonic() when it last went into the pool

    def expire(self) -> None:
        """The idle timeout passed: close."""


C = TypeVar("C", bound=Pooled)


class H1Pool(Generic[C]):
    """Idle keep-alive upstream connections of one listener, per endpoint.

    A connection's idle timer starts when it first goes idle and is not cancelled when it is
    taken: when it fires, a connection in use, or idle for less than the timeout, is left alone
    (or timed again), so a busy connection costs no timer per request.
    """

    def __init__(self) -> None:
        self.idle: dict[Endpoint, list[C]] = {}

    def take(self, endpoint: Endpoint) -> C | None:
        """An idle connection to ``endpoint``, most recently used first."""
        conns = self.idle.get(endpoint)
        while conns:
            conn = conns.pop()
            if not conn.transport.is_closing():
                return conn
        return None

    def put(self, conn: C, idle_timeout: float, max_idle: int) -> None:
        """Keep ``conn`` for reuse, closing it after ``idle_timeout`` seconds unused."""
        conns = self.idle.setdefault(conn.endpoint, [])
        if len(conns) >= max_idle:
            conn.transport.close()
            return
        conns.append(conn)
        conn.idle_since = time.monotonic()  # get_running_loop() would cost a getpid() syscall
        if conn.idle_timer is None:
            loop = asyncio.get_running_loop()
            conn.idle_timer = loop.call_later(idle_timeout, self._expire, conn, idle_timeout)

    def _expire(self, conn: C, idle_timeout: float) -> None:
        conn.idle_timer = None
        conns = self.idle.get(conn.endpoint)
        if not conns or conn not in conns:
            return  # in use: it is timed again when it comes back
        left = conn.idle_since + idle_timeout - time.monotonic()
        if left > 0:
            loop = asyncio.get_running_loop()
            conn.idle_timer = loop.call_later(left, self._expire, conn, idle_timeout)
            return
        self.forget(conn)
        conn.expire()

    def forget(self, conn: C) -> None:
        """Drop a closed connection from the idle list."""
        conns = self.idle.get(conn.endpoint)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.idle[conn.endpoint]


class H1Server(asyncio.Protocol):
    """The accepted side of an HTTP/1 connection."""

    def __init__(self, ctx: ConnContext, transport: asyncio.Transport) -> None:
        self.ctx = ctx
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.in_message = False  # the parser has begun a request it has not finished
        self.heads = 0  # request heads parsed from the last read
        self.last_head: h1head.SeenRequest | None = None  # the last one, if it may be reused
        self.queue: deque[H1Exchange] = deque()
        self.parsing: H1Exchange | None = None
        self.headers: h1head.Headers = []
        self.url = b""
        self.head_bytes = 0
        self.max_head = ctx.config.max_head_bytes
        self.draining = False
        self.closed = False
        self.broken: ProxyError | None = None
        self.tunnel: H1Upstream | None = None
        self.tunnel_eof = False  # the client ended its direction of the tunnel
        self.connecting: asyncio.Task[None] | None = None
        self.client_id = ctx.client_id.encode() if ctx.client_id else None
        self.corked: list[bytes | memoryview] | None = None
        self.writing_paused = False  # the transport's buffer is above its high-water mark

    # -- bytes in ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.ctx.stats.read += len(data)
        if self.tunnel is not None:
            self.tunnel.stats.written += len(data)
            self.tunnel.transport.write(data)
            return
        if self.broken is not None:
            return
        if not self.in_message:
            seen = h1head.SEEN_REQUESTS.get(data)
            if seen is not None and seen.size <= self.max_head:
                # A whole bodiless request whose head the parser accepted before: take it as
                # the parser would (it stays between messages, as it would after this one).
                self._take_request(seen.method, seen.url, seen.version, True, False, seen.known)
                self.on_message_complete()
                return
            whole = len(data) <= h1head.REQUEST_CACHE_MAX_HEAD and data[-4:] == b"\r\n\r\n"
        else:
            whole = False
        self.heads = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            ex = self.queue[-1] if self.queue else None
            if ex is not None and ex.tunnel:
                self.transport.pause_reading()  # until the upstream agrees to switch
                if rest and ex.upstream is not None:
                    ex.upstream.stats.written += len(rest)
                    ex.upstream.transport.write(rest)
                elif rest:
                    ex.pending.append(rest)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                too_large = "request header fields too large"
                self._fail(ProxyError(431, too_large, GRPC_RESOURCE_EXHAUSTED))
            else:
                self._fail(ProxyError(400, f"malformed HTTP request: {exc}", GRPC_INTERNAL))
        except httptools.HttpParserError as exc:
            self._fail(ProxyError(400, f"malformed HTTP request: {exc}", GRPC_INTERNAL))
        else:
            seen = self.last_head
            if whole and seen is not None and self.heads == 1 and not self.in_message:
                h1head.remember_request(data, seen)

    def eof_received(self) -> bool:
        up = self.tunnel
        if up is not None:
            self.tunnel_eof = True
            if up.tunnel_eof or up.transport.is_closing():
                self.transport.close()  # both directions have ended
                up.transport.close()
            else:
                up.transport.write_eof()  # TCP FIN, or TLS close_notify then FIN
            return True
        if self.queue:
            self.draining = True  # answer what was asked, then close
            return True
        return False

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.headers = []
        self.url = b""
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.max_head:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_head:
            raise _HeadTooLarge
        if self.parsing is not None:
            return  # trailer fields of a chunked request: not forwarded
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        url = self.url
        v = parser.get_http_version()
        version = b"1.1" if v == "1.1" else v.encode()
        keep_alive = parser.should_keep_alive()
        tunnel = method == b"CONNECT" or parser.should_upgrade()
        size = self.head_bytes
        known = h1head.request_of(method, url, tunnel, self.headers, size)
        self.heads += 1
        if keep_alive and not tunnel and not known.has_body:
            self.last_head = h1head.SeenRequest(method, url, version, known, size)
        else:
            self.last_head = None
        self._take_request(method, url, version, keep_alive, tunnel, known)

    def _take_request(
        self,
        method: bytes,
        url: bytes,
        version: bytes,
        keep_alive: bool,
        tunnel: bool,
        known: h1head.RequestHead,
    ) -> None:
        """Queue the request whose head was just read, and send it if it is the only one."""
        ex = H1Exchange()
        ex.version = version
        ex.keep_alive = keep_alive and not self.draining
        ex.head_request = method == b"HEAD"
        ex.tunnel = tunnel
        ex.chunked = known.chunked
        ex.has_body = known.has_body
        ex.authority = known.authority
        ex.name = known.name
        ex.method = method
        ex.url = url
        if self.client_id is not None:
            ex.headers = [*known.forwarded, (h1head.CLIENT_ID, self.client_id)]
        else:
            ex.headers = known.forwarded
            ex.known = known
        self.parsing = ex
        self.queue.append(ex)
        if len(self.queue) == 1:
            self._dispatch(ex)
        else:
            self.transport.pause_reading()  # pipelined: hold further requests

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.response_done:
            return
        if ex.dispatch is not None:
            ex.dispatch.keep(body)
        up = ex.upstream
        if up is not None:
            data = h1head.chunk(body) if ex.chunked else body
            up.stats.written += len(data)
            up.transport.write(data)
        elif ex.h2 is not None:
            ex.h2.body(body)
        else:
            ex.pending.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        ex.request_done = True
        if not ex.response_done:
            if ex.h2 is not None:
                ex.h2.end_request()
            elif ex.chunked:
                self.on_body_end(ex)
        if ex.response_done:
            self._finished(ex)

    def on_body_end(self, ex: H1Exchange) -> None:
        """The end of a chunked request body: its last chunk (an upstream that is not bound yet
        adds it when it is, see :meth:`H1Upstream.attach`)."""
        up = ex.upstream
        if up is not None:
            up.stats.written += len(h1head.LAST_CHUNK)
            up.transport.write(h1head.LAST_CHUNK)

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, ex: H1Exchange) -> None:
        """Route ``ex`` (the head of the queue) to its logical destination and send it."""
        ctx = self.ctx
        if not ex.admitted:
            in_flight = ctx.in_flight
            if in_flight.count >= in_flight.limit:
                self._shed(ex, in_flight.limit)
                return
            in_flight.count += 1
            ex.admitted = True
        logical = ctx.router.logical(ex.name or None, ctx.target)
        first = logical.waiting()
        if first is not None:  # discovery has not answered for this destination yet
            self._wait(ex, first, INITIAL_WAIT, lambda: self._dispatch(ex))
            return
        now = time.monotonic()
        ex.started = now
        ex.logical = logical
        profile = logical.profile
        if profile.name or profile.routes:
            path = request_path(ex.url)
            d = ex.dispatch = Dispatch(
                ctx.direction, ctx.metrics, logical, ex.method.decode("latin-1"), path, now
            )
            for data in ex.pending:  # body bytes that arrived while discovery was answering
                d.keep(data)
            timeout = d.timeout
            if timeout is not None:
                ex.timer = ctx.deadlines.call_later(now, timeout, self._timed_out, ex)
        ex.deadline = now + ctx.dcfg.dispatch_timeout
        self._attempt(ex)

    def _shed(self, ex: H1Exchange, limit: int) -> None:
        """Answer ``ex`` with 503: the listener has ``limit`` requests in flight already."""
        now = ex.started = time.monotonic()
        authority = ex.authority[:-3] if ex.authority.endswith(":80") else ex.authority
        ex.stats = self.ctx.metrics.http.endpoint(authority, self.ctx.base_labels)
        ex.stats.request(now)
        self.respond_error(ex, max_in_flight(limit))

    def _release(self, ex: H1Exchange) -> None:
        """``ex`` is over: it no longer counts as in flight."""
        if ex.admitted:
            ex.admitted = False
            self.ctx.in_flight.count -= 1

    def _attempt(self, ex: H1Exchange) -> None:
        """Pick an endpoint for ``ex`` and send it there (again, for a retry)."""
        ctx = self.ctx
        assert ex.logical is not None
        now = time.monotonic()
        authority = ex.authority[:-3] if ex.authority.endswith(":80") else ex.authority
        try:
            load = ex.logical.pick(ctx.target, authority or None)
            if load is None:
                if now < ex.deadline:  # the destination has no endpoints: wait for some
                    changed = ex.logical.changed()
                    if changed is not None:
                        self._wait(ex, changed, ex.deadline - now, lambda: self._attempt(ex))
                        return
                raise no_endpoints(ex.logical.name or ex.authority)
            conn: ClientConn | None = None
            if load.endpoint.h2 and not ex.tunnel:  # HTTP/1 to a meshed peer crosses as HTTP/2
                conn = ctx.h2_pool.acquire(load.endpoint, ctx)
                if conn is None:  # every connection there is at the server's stream limit
                    if now < ex.deadline:
                        room = ctx.h2_pool.room(load.endpoint)
                        self._wait(ex, room, ex.deadline - now, lambda: self._attempt(ex))
                        return
                    raise streams_exhausted(load.endpoint.addr)
        except ProxyError as err:
            if ex.stats is None:
                ex.stats = ctx.metrics.http.endpoint(authority, ctx.base_labels)
                ex.stats.request(now)
            self.respond_error(ex, err)
            return
        endpoint = load.endpoint
        load.start()
        ex.load = load
        ex.attempt_started = now
        ex.stats = ctx.metrics.http.endpoint(authority, ctx.request_labels(endpoint))
        ex.stats.request(now)
        if ex.dispatch is not None:
            ex.dispatch.attempt(now)
        if ctx.taps.active and ex.tap is None:
            ex.tap = self._observe(ex, endpoint, now)
        if conn is not None:
            Upgrade(self, ex, now).send(endpoint, conn)
            return
        if not ex.head:
            ex.head = h1head.request_head(ex.method, ex.url, ex.headers, ex.chunked)
        up: H1Upstream | None = ctx.h1_pool.take(endpoint)
        if up is not None:
            ex.reused = True
            up.attach(ex, self)
            return
        self._start_connect(ex, endpoint)

    def _observe(self, ex: H1Exchange, endpoint: Endpoint | None, now: float) -> Tapped | None:
        """Offer ``ex`` to the proxy's taps (called only while one is active)."""
        url = ex.url
        scheme = "http"
        if url[:1] != b"/" and b"://" in url:
            scheme = url.split(b"://", 1)[0].decode("latin-1").lower()
        return self.ctx.observe(
            endpoint,
            ex.method.decode("latin-1"),
            scheme,
            ex.authority,
            request_path(url),
            ex.headers.copy,
            ex.dispatch.route if ex.dispatch is not None else None,
            now,
        )

    def _wait(
        self, ex: H1Exchange, future: asyncio.Future[None], timeout: float, then: Callable[[], None]
    ) -> None:
        """Hold the connection until ``future`` completes (or ``timeout``), then call ``then``."""
        self.transport.pause_reading()

        async def wait() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.0))
            ex.waiter = None
            if not self.closed and not ex.response_done:
                self.transport.resume_reading()
                then()

        ex.waiter = asyncio.get_running_loop().create_task(wait())

    def _timed_out(self, ex: H1Exchange) -> None:
        """The route's timeout expired: answer 504 unless the response has begun."""
        ex.timer = None
        up = ex.upstream
        if ex.response_done or (ex.response_started and not (up is not None and up.discarding)):
            return
        if ex.h2 is not None:
            ex.h2.cancel(None)
        if up is not None:
            up.ex = up.down = None
            up.discarding = False
            ex.upstream = None
            up.transport.abort()
        if ex.waiter is not None:
            ex.waiter.cancel()
            ex.waiter = None
        d = ex.dispatch
        self.respond_error(ex, route_timeout(d.timeout if d is not None and d.timeout else 0.0))

    def retry(self, ex: H1Exchange) -> None:
        """Send ``ex`` again: its last attempt failed and the route allows a retry."""
        assert ex.dispatch is not None and ex.dispatch.replay is not None
        ex.upstream = None
        ex.reused = False
        ex.response_started = False
        ex.pending = list(ex.dispatch.replay)
        self._attempt(ex)

    def attempt_done(
        self, ex: H1Exchange, status: int, error: str | None = None, now: float | None = None
    ) -> None:
        """Count the end of ``ex``'s attempt in flight (endpoint and ``route_actual`` series)."""
        load = ex.load
        if load is None:
            return
        ex.load = None
        if now is None:
            now = time.monotonic()
        latency = (now - ex.attempt_started) * 1000.0
        load.done(latency, now)
        if ex.stats is not None:
            ex.stats.response(now, latency, status, classify(status, None, error), None, error)
            ex.stats = None
        if ex.dispatch is not None:
            ex.dispatch.attempt_done(now, latency, status, None, error)

    def exchange_done(self, ex: H1Exchange, status: int, error: str | None = None) -> None:
        """Count the response the client got for ``ex``."""
        now = time.monotonic()
        if ex.load is not None:
            self.attempt_done(ex, status, error, now)
        elif ex.stats is not None:  # answered before an endpoint was chosen
            latency = (now - ex.started) * 1000.0
            cls = classify(status, None, error)
            ex.stats.response(now, latency, status, cls, None, error)
            ex.stats = None
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        if ex.dispatch is not None:
            ex.dispatch.done(now, (now - ex.started) * 1000.0, status, None, error)
        if ex.tap is not None:
            if ex.upstream is not None:
                ex.upstream.tap = None
            ex.tap.response_end(now)

    def _start_connect(self, ex: H1Exchange, endpoint: Endpoint) -> None:
        self.transport.pause_reading()
        self.connecting = asyncio.get_running_loop().create_task(self._connect(ex, endpoint))

    async def _connect(self, ex: H1Exchange, endpoint: Endpoint) -> None:
        ctx = self.ctx
        up = H1Upstream(ctx, endpoint, ctx.dst_conn_stats(endpoint))
        try:
            await ctx.dialer.connect(lambda: up, endpoint, ctx.dcfg.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.connecting = None
            up.stats.close(errno_label(exc))
            if not self.closed and not ex.response_done:
                self.transport.resume_reading()
                self.respond_error(ex, connect_error(exc, endpoint.addr))
            return
        self.connecting = None
        if self.closed or ex.response_done:
            up.transport.close()
            return
        self.transport.resume_reading()
        up.attach(ex, self)

    def redispatch(self, ex: H1Exchange, endpoint: Endpoint) -> None:
        """Send a bodiless ``ex`` again on a new connection: its pooled one closed under it."""
        ex.upstream = None
        ex.reused = False
        self._start_connect(ex, endpoint)

    # -- responses --------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Write response bytes to the client (held back while corked)."""
        self.ctx.stats.written += len(data)
        if self.corked is not None:
            self.corked.append(data)
            return
        self.transport.write(data)

    def cork(self) -> None:
        """Hold writes until :meth:`uncork`, so a response head and body go out together
        (one send, and one TLS record, instead of several)."""
        if self.corked is None:
            self.corked = []

    def uncork(self) -> None:
        """Write what was held back, in one piece."""
        held, self.corked = self.corked, None
        if held and not self.transport.is_closing():
            self.transport.write(b"".join(held))

    def respond_error(self, ex: H1Exchange, err: ProxyError) -> None:
        """Answer ``ex`` (which must be at the head of the queue) with a proxy error."""
        log.info("%s %s: %s", self.ctx.direction, ex.authority or "-", err.reason)
        close = not ex.keep_alive or not ex.request_done or self.draining
        response = h1head.error_response(err.status, err.reason, close)
        if ex.tap is None and self.ctx.taps.active:
            ex.tap = self._observe(ex, None, time.monotonic())
        if ex.tap is not None:
            fields = partial(h1head.head_fields, response)
            ex.tap.response_init(time.monotonic(), err.status, fields)
        self.write(response)
        self.exchange_done(ex, err.status, err.error)
        ex.keep_alive = not close
        ex.response_done = True
        if close:
            self._close_after_write()
            return
        if ex.request_done:
            self._finished(ex)

    def response_complete(self, ex: H1Exchange) -> None:
        """Called by the upstream when the response to ``ex`` has been fully written."""
        if ex.request_done:
            self._finished(ex)
        elif not ex.keep_alive:
            self._close_after_write()

    def _finished(self, ex: H1Exchange) -> None:
        if not self.queue or self.queue[0] is not ex:
            return
        self.queue.popleft()
        if ex.admitted:  # what _release does, inline: this is every request's path
            ex.admitted = False
            self.ctx.in_flight.count -= 1
        if not ex.keep_alive or (self.draining and not self.queue):
            self._close_after_write()
            return
        if self.broken is not None and not self.queue:
            self._answer_broken()
            return
        if self.queue:
            self._dispatch(self.queue[0])
        if len(self.queue) <= 1:
            self.transport.resume_reading()

    def _fail(self, err: ProxyError) -> None:
        log.info("%s connection from %s:%s: %s", self.ctx.direction, *self.ctx.peer, err.reason)
        self.broken = err
        self.transport.pause_reading()
        if self.parsing is not None and self.parsing in self.queue:
            self.queue.remove(self.parsing)
            self._release(self.parsing)
            self.parsing = None
        if not self.queue:
            self._answer_broken()

    def _answer_broken(self) -> None:
        assert self.broken is not None
        self.write(h1head.error_response(self.broken.status, self.broken.reason, True))
        self._close_after_write()

    def _close_after_write(self) -> None:
        self.uncork()
        self.closed = True
        self._abandon()
        self.transport.close()

    def _abandon(self) -> None:
        """Give up the upstream side of every exchange still waiting for its response."""
        for ex in self.queue:
            if ex.response_done:
                continue
            if ex.upstream is not None:
                ex.upstream.transport.abort()
            elif ex.h2 is not None:
                ex.h2.cancel("cancel")

    def start_tunnel(self, up: H1Upstream) -> None:
        """Switch to copying raw bytes to ``up`` after a 101 or a CONNECT's 2xx."""
        self.tunnel = up
        self.transport.resume_reading()

    # -- flow control and lifecycle ---------------------------------------------------------

    def pause_writing(self) -> None:
        self.writing_paused = True
        ex = self.queue[0] if self.queue else None
        if ex is not None:
            if ex.upstream is not None:
                ex.upstream.transport.pause_reading()
            elif ex.h2 is not None:
                ex.h2.paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        ex = self.queue[0] if self.queue else None
        if ex is not None:
            if ex.upstream is not None:
                ex.upstream.transport.resume_reading()
            elif ex.h2 is not None:
                ex.h2.resume()

    def drain(self) -> None:
        self.draining = True
        if not self.queue:
            self._close_after_write()

    def abort(self) -> None:
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.stats.close(errno_label(exc))
        self.ctx.tracker.discard(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
        for ex in self.queue:
            self._release(ex)
        self._abandon()
        self.queue.clear()


class H1Upstream(asyncio.Protocol):
    """A connection the proxy dialled to an endpoint; carries one exchange at a time."""

    transport: asyncio.Transport

    def __init__(self, ctx: ConnContext, endpoint: Endpoint, stats: ConnStats) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.stats = stats
        self.parser = httptools.HttpResponseParser(self)
        self.ex: H1Exchange | None = None
        self.down: H1Server | None = None
        self.headers: h1head.Headers = []
        self.reason = b""
        self.status = 0
        self.down_chunked = False
        self.keep_alive = True
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.tunnel = False
        self.tunnel_eof = False  # the server ended its direction of the tunnel
        self.discarding = False  # reading a failed response that will be retried
        self.tap: Tapped | None = None  # the tapped exchange whose response body is coming

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def attach(self, ex: H1Exchange, down: H1Server) -> None:
        """Send ``ex``'s request on this connection and stream its response to ``down``."""
        self.ex = ex
        self.down = down
        ex.upstream = self
        pending = ex.pending
        if ex.chunked and not ex.tunnel:
            framed = [h1head.chunk(body) for body in pending]
            if ex.request_done:
                framed.append(h1head.LAST_CHUNK)
            pending = framed
        data = ex.head + b"".join(pending) if pending else ex.head
        ex.pending = []
        self.stats.written += len(data)
        self.transport.write(data)

    def expire(self) -> None:
        """Idle timeout in the pool."""
        self.idle_timer = None
        self.transport.close()

    # -- bytes in ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.stats.read += len(data)
        down = self.down
        if self.tunnel:
            if down is not None:
                down.write(data)
            return
        if self.ex is None:
            self.transport.close()  # bytes nobody asked for
            return
        if down is not None:
            down.cork()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            if self.tunnel and down is not None and rest:
                down.write(rest)
        except httptools.HttpParserError as exc:
            self._failed(f"malformed HTTP response: {exc}")
        finally:
            if down is not None:
                down.uncork()

    def eof_received(self) -> bool:
        down = self.down
        if self.tunnel and down is not None:
            self.tunnel_eof = True
            if down.tunnel_eof or down.transport.is_closing():
                self.transport.close()  # both directions have ended
                down.transport.close()
            else:
                down.transport.write_eof()
            return True
        ex = self.ex
        if (
            ex is not None
            and ex.response_started
            and not ex.response_done
            and self.keep_alive is False
        ):
            self._complete()  # a close-delimited body ends here
        return False

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex = self.ex
        down = self.down
        if ex is None or down is None:
            return
        status = self.parser.get_status_code()
        self.status = status
        headers = self.headers
        if 100 <= status < 200 and status != 101:
            if ex.version == b"1.1":
                fwd = h1head.end_to_end(headers)
                down.write(h1head.response_head(status, self.reason, fwd, False, False, b"1.1"))
            return
        ex.response_started = True
        switching = ex.tunnel and (status == 101 or (200 <= status < 300 and status != 101))
        if switching:
            self.tunnel = True
            fwd = h1head.end_to_end(headers, keep_upgrade=status == 101)
            if ex.tap is not None:
                ex.tap.response_init(time.monotonic(), status, fwd.copy)
            down.write(h1head.response_head(status, self.reason, fwd, False, False, ex.version))
            down.exchange_done(ex, status)
            down.start_tunnel(self)
            return
        no_body = ex.head_request or status in (204, 304)
        has_length = h1head.header_value(headers, b"content-length") is not None
        chunked_in = h1head.is_chunked(headers)
        self.keep_alive = self.parser.should_keep_alive()
        close_delimited = not no_body and not has_length and not chunked_in
        if close_delimited:
            self.keep_alive = False
        d = ex.dispatch
        if d is not None and ex.request_done and d.retry(status, None, time.monotonic()):
            self.discarding = True  # read this response to its end, then send the request again
            down.attempt_done(ex, status)
            if no_body:
                self.parser = httptools.HttpResponseParser(self)
                self._complete()
            return
        self.down_chunked = not no_body and not has_length and ex.version == b"1.1"
        if ex.tunnel or (close_delimited and not self.down_chunked):
            ex.keep_alive = False
        if down.draining:
            ex.keep_alive = False
        fwd = h1head.end_to_end(headers)
        if ex.tap is not None:
            self.tap = ex.tap
            ex.tap.response_init(time.monotonic(), status, fwd.copy)
        down.write(
            h1head.response_head(
                status, self.reason, fwd, self.down_chunked, not ex.keep_alive, ex.version
            )
        )
        if no_body:
            self.parser = httptools.HttpResponseParser(self)
            self._complete()

    def on_body(self, body: bytes) -> None:
        down = self.down
        if down is None or self.discarding:
            return
        if self.tap is not None:
            self.tap.response_bytes += len(body)
        down.write(h1head.chunk(body) if self.down_chunked else body)

    def on_message_complete(self) -> None:
        ex = self.ex
        if ex is None or not ex.response_started or ex.response_done or self.tunnel:
            return
        self._complete()

    # -- completion -------------------------------------------------------------------------

    def _complete(self) -> None:
        ex, down = self.ex, self.down
        if ex is None or down is None:
            return
        discarded = self.discarding
        self.discarding = False
        if not discarded:
            if self.down_chunked:
                down.write(h1head.LAST_CHUNK)
            ex.response_done = True
            down.exchange_done(ex, self.status)
        self.ex = None
        self.down = None
        ex.upstream = None
        if self.keep_alive and ex.request_done and not self.transport.is_closing():
            dcfg = self.ctx.dcfg
            self.ctx.h1_pool.put(self, dcfg.pool_idle_timeout, dcfg.max_idle_per_endpoint)
        else:
            self.transport.close()
        if discarded:
            down.retry(ex)
        else:
            down.response_complete(ex)

    def _failed(self, detail: str) -> None:
        ex, down = self.ex, self.down
        if self.discarding and ex is not None and down is not None:
            self.keep_alive = False  # the failed response was counted; retry elsewhere
            self._complete()
            return
        self.transport.abort()
        if ex is None or down is None or ex.response_done:
            return
        self.ex = self.down = None
        if ex.response_started:
            down.exchange_done(ex, self.status, "connection reset")
            ex.response_done = True
            down.abort()
        elif ex.reused and ex.request_done and not ex.has_body:
            down.redispatch(ex, self.endpoint)  # a pooled connection closed as we used it
        else:
            ex.upstream = None
            down.respond_error(ex, upstream_reset(detail))

    # -- flow control and lifecycle ---------------------------------------------------------

    def pause_writing(self) -> None:
        if self.down is not None:
            self.down.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.down is not None:
            self.down.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.close(errno_label(exc))
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.ctx.h1_pool.forget(self)
        down = self.down
        if self.tunnel:
            if down is not None:
                down.transport.close()
            return
        if self.ex is not None and not self.ex.response_done:
            ex = self.ex
            if ex.response_started and not self.keep_alive and not self.discarding:
                self._complete()
            else:
                self._failed(str(exc) if exc else "connection closed before the response")


def serve_http1(transport: asyncio.Transport, ctx: ConnContext, initial: bytes) -> None:
    """Take over an accepted connection whose first bytes ``initial`` are an HTTP/1 request."""
    server = H1Server(ctx, transport)
    transport.set_protocol(server)
    ctx.tracker.add(server)
    if initial:
        ctx.stats.read -= len(initial)  # counted once already by the listener
        server.data_received(initial)
