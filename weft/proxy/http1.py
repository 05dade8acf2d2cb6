"""HTTP/1.1 forwarding: keep-alive on both sides, streamed bodies, upgrades, strict parsing.

A downstream connection (:class:`H1Server`) parses requests with httptools (llhttp, strict mode,
which rejects the request-smuggling vectors) and queues them as :class:`_Exchange` objects; the
head of the queue is bound to a pooled upstream connection (:class:`H1Upstream`) that parses the
response and streams it back. Bodies are forwarded chunk by chunk with transport back-pressure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import cast

import httptools

from weft.proxy import h1head
from weft.proxy.classify import classify
from weft.proxy.context import ConnContext
from weft.proxy.discovery import Endpoint
from weft.proxy.errors import (
    GRPC_INTERNAL,
    GRPC_RESOURCE_EXHAUSTED,
    ProxyError,
    connect_error,
    errno_label,
    upstream_reset,
)
from weft.proxy.metrics import ConnStats, EndpointStats

log = logging.getLogger("weft.proxy.http1")


class _HeadTooLarge(Exception):
    """Raised from a parser callback when a request head exceeds the limit."""


class _Exchange:
    """One request and its response."""

    __slots__ = (
        "authority",
        "chunked",
        "has_body",
        "head",
        "head_request",
        "keep_alive",
        "pending",
        "request_done",
        "response_done",
        "response_started",
        "reused",
        "started",
        "stats",
        "tunnel",
        "upstream",
        "version",
    )

    def __init__(self) -> None:
        self.head = b""
        self.authority = ""
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
        self.stats: EndpointStats | None = None
        self.started = 0.0


class H1Pool:
    """Idle keep-alive upstream connections of one listener, per endpoint."""

    def __init__(self) -> None:
        self.idle: dict[Endpoint, list[H1Upstream]] = {}

    def take(self, endpoint: Endpoint) -> H1Upstream | None:
        """An idle connection to ``endpoint``, most recently used first."""
        conns = self.idle.get(endpoint)
        while conns:
            conn = conns.pop()
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
                conn.idle_timer = None
            if not conn.transport.is_closing():
                return conn
        return None

    def put(self, conn: H1Upstream, idle_timeout: float, max_idle: int) -> None:
        """Keep ``conn`` for reuse, closing it after ``idle_timeout`` seconds unused."""
        conns = self.idle.setdefault(conn.endpoint, [])
        if len(conns) >= max_idle:
            conn.transport.close()
            return
        conns.append(conn)
        conn.idle_timer = asyncio.get_running_loop().call_later(idle_timeout, conn.expire)

    def forget(self, conn: H1Upstream) -> None:
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
        self.queue: deque[_Exchange] = deque()
        self.parsing: _Exchange | None = None
        self.headers: h1head.Headers = []
        self.url = b""
        self.head_bytes = 0
        self.max_head = ctx.config.max_head_bytes
        self.draining = False
        self.closed = False
        self.broken: ProxyError | None = None
        self.tunnel: H1Upstream | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.client_id = ctx.client_id.encode() if ctx.client_id else None
        self.corked: list[bytes] | None = None

    # -- bytes in ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.ctx.stats.read += len(data)
        if self.tunnel is not None:
            self.tunnel.stats.written += len(data)
            self.tunnel.transport.write(data)
            return
        if self.broken is not None:
            return
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

    def eof_received(self) -> bool:
        if self.tunnel is not None:
            if self.tunnel.transport.can_write_eof():
                self.tunnel.transport.write_eof()
            return True
        if self.queue:
            self.draining = True  # answer what was asked, then close
            return True
        return False

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
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
        headers = self.headers
        ex = _Exchange()
        method = parser.get_method()
        ex.version = parser.get_http_version().encode()
        ex.keep_alive = parser.should_keep_alive() and not self.draining
        ex.head_request = method == b"HEAD"
        ex.tunnel = method == b"CONNECT" or parser.should_upgrade()
        ex.chunked = h1head.is_chunked(headers)
        length = h1head.header_value(headers, b"content-length")
        ex.has_body = ex.chunked or (length is not None and length.strip() != b"0")
        host = h1head.header_value(headers, b"host")
        if method == b"CONNECT":
            authority = self.url
        elif host is not None:
            authority = host
        elif self.url[:1] != b"/" and b"://" in self.url:
            authority = self.url.split(b"://", 1)[1].split(b"/", 1)[0]
        else:
            authority = b""
        ex.authority = authority.decode("latin-1")
        forwarded = h1head.end_to_end(headers, keep_upgrade=ex.tunnel and method != b"CONNECT")
        if self.client_id is not None:
            forwarded.append((h1head.CLIENT_ID, self.client_id))
        ex.head = h1head.request_head(method, self.url, forwarded, ex.chunked)
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
        data = h1head.chunk(body) if ex.chunked else body
        up = ex.upstream
        if up is not None:
            up.stats.written += len(data)
            up.transport.write(data)
        else:
            ex.pending.append(data)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        ex.request_done = True
        if ex.chunked and not ex.response_done:
            self.on_body_end(ex)
        if ex.response_done:
            self._finished(ex)

    def on_body_end(self, ex: _Exchange) -> None:
        up = ex.upstream
        if up is not None:
            up.stats.written += len(h1head.LAST_CHUNK)
            up.transport.write(h1head.LAST_CHUNK)
        else:
            ex.pending.append(h1head.LAST_CHUNK)

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, ex: _Exchange) -> None:
        ctx = self.ctx
        now = time.monotonic()
        ex.started = now
        authority = ex.authority
        if authority.endswith(":80"):
            authority = authority[:-3]
        try:
            endpoint = ctx.router.endpoint(ex.authority or None, ctx.target)
        except ProxyError as err:
            ex.stats = ctx.metrics.http.endpoint(authority, ctx.base_labels)
            ex.stats.request(now)
            self.respond_error(ex, err)
            return
        ex.stats = ctx.metrics.http.endpoint(authority, ctx.request_labels(endpoint))
        ex.stats.request(now)
        up = ctx.h1_pool.take(endpoint)
        if up is not None:
            ex.reused = True
            up.attach(ex, self)
            return
        self._start_connect(ex, endpoint)

    def _start_connect(self, ex: _Exchange, endpoint: Endpoint) -> None:
        self.transport.pause_reading()
        self.connecting = asyncio.get_running_loop().create_task(self._connect(ex, endpoint))

    async def _connect(self, ex: _Exchange, endpoint: Endpoint) -> None:
        ctx = self.ctx
        up = H1Upstream(ctx, endpoint, ctx.dst_conn_stats(endpoint))
        try:
            await ctx.dialer.connect(lambda: up, endpoint, ctx.dcfg.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.connecting = None
            up.stats.close(errno_label(exc))
            if not self.closed:
                self.transport.resume_reading()
                self.respond_error(ex, connect_error(exc, endpoint.addr))
            return
        self.connecting = None
        if self.closed:
            up.transport.close()
            return
        self.transport.resume_reading()
        up.attach(ex, self)

    def redispatch(self, ex: _Exchange, endpoint: Endpoint) -> None:
        """Send a bodiless ``ex`` again on a new connection: its pooled one closed under it."""
        ex.upstream = None
        ex.reused = False
        self._start_connect(ex, endpoint)

    # -- responses --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
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
        if held:
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def respond_error(self, ex: _Exchange, err: ProxyError) -> None:
        """Answer ``ex`` (which must be at the head of the queue) with a proxy error."""
        log.info("%s %s: %s", self.ctx.direction, ex.authority or "-", err.reason)
        close = not ex.keep_alive or not ex.request_done or self.draining
        self.write(h1head.error_response(err.status, err.reason, close))
        if ex.stats is not None:
            now = time.monotonic()
            ex.stats.response(now, (now - ex.started) * 1000.0, err.status, classify(err.status))
        ex.keep_alive = not close
        ex.response_done = True
        if close:
            self._close_after_write()
            return
        if ex.request_done:
            self._finished(ex)

    def response_complete(self, ex: _Exchange) -> None:
        """Called by the upstream when the response to ``ex`` has been fully written."""
        if ex.request_done:
            self._finished(ex)
        elif not ex.keep_alive:
            self._close_after_write()

    def _finished(self, ex: _Exchange) -> None:
        if not self.queue or self.queue[0] is not ex:
            return
        self.queue.popleft()
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
        for ex in self.queue:
            if ex.upstream is not None and not ex.response_done:
                ex.upstream.transport.abort()
        self.transport.close()

    def start_tunnel(self, up: H1Upstream) -> None:
        """Switch to copying raw bytes to ``up`` after a 101 or a CONNECT's 2xx."""
        self.tunnel = up
        self.transport.resume_reading()

    # -- flow control and lifecycle ---------------------------------------------------------

    def pause_writing(self) -> None:
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.upstream is not None:
            ex.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.upstream is not None:
            ex.upstream.transport.resume_reading()

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
            if ex.upstream is not None and not ex.response_done:
                ex.upstream.transport.abort()
        self.queue.clear()


class H1Upstream(asyncio.Protocol):
    """A connection the proxy dialled to an endpoint; carries one exchange at a time."""

    transport: asyncio.Transport

    def __init__(self, ctx: ConnContext, endpoint: Endpoint, stats: ConnStats) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.stats = stats
        self.parser = httptools.HttpResponseParser(self)
        self.ex: _Exchange | None = None
        self.down: H1Server | None = None
        self.headers: h1head.Headers = []
        self.reason = b""
        self.status = 0
        self.down_chunked = False
        self.keep_alive = True
        self.idle_timer: asyncio.TimerHandle | None = None
        self.tunnel = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def attach(self, ex: _Exchange, down: H1Server) -> None:
        """Send ``ex``'s request on this connection and stream its response to ``down``."""
        self.ex = ex
        self.down = down
        ex.upstream = self
        data = ex.head + b"".join(ex.pending) if ex.pending else ex.head
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
            if down.transport.can_write_eof():
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
            down.write(h1head.response_head(status, self.reason, fwd, False, False, ex.version))
            self._record(ex)
            down.start_tunnel(self)
            return
        no_body = ex.head_request or status in (204, 304)
        has_length = h1head.header_value(headers, b"content-length") is not None
        chunked_in = h1head.is_chunked(headers)
        self.keep_alive = self.parser.should_keep_alive()
        close_delimited = not no_body and not has_length and not chunked_in
        self.down_chunked = not no_body and not has_length and ex.version == b"1.1"
        if close_delimited:
            self.keep_alive = False
        if ex.tunnel or (close_delimited and not self.down_chunked):
            ex.keep_alive = False
        if down.draining:
            ex.keep_alive = False
        fwd = h1head.end_to_end(headers)
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
        if down is None:
            return
        down.write(h1head.chunk(body) if self.down_chunked else body)

    def on_message_complete(self) -> None:
        ex = self.ex
        if ex is None or not ex.response_started or ex.response_done or self.tunnel:
            return
        self._complete()

    # -- completion -------------------------------------------------------------------------

    def _record(self, ex: _Exchange, error: str | None = None) -> None:
        if ex.stats is not None:
            now = time.monotonic()
            cls = classify(self.status, None, error)
            ex.stats.response(now, (now - ex.started) * 1000.0, self.status, cls, None, error)

    def _complete(self) -> None:
        ex, down = self.ex, self.down
        if ex is None or down is None:
            return
        if self.down_chunked:
            down.write(h1head.LAST_CHUNK)
        ex.response_done = True
        self._record(ex)
        self.ex = None
        self.down = None
        ex.upstream = None
        if self.keep_alive and ex.request_done and not self.transport.is_closing():
            dcfg = self.ctx.dcfg
            self.ctx.h1_pool.put(self, dcfg.pool_idle_timeout, dcfg.max_idle_per_endpoint)
        else:
            self.transport.close()
        down.response_complete(ex)

    def _failed(self, detail: str) -> None:
        ex, down = self.ex, self.down
        self.transport.abort()
        if ex is None or down is None or ex.response_done:
            return
        self.ex = self.down = None
        if ex.response_started:
            self._record(ex, error="connection reset")
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
            if ex.response_started and not self.keep_alive:
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
