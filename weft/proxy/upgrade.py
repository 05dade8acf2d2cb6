"""Outbound: an HTTP/1.x request to a meshed endpoint goes to it as an HTTP/2 stream on the
listener's shared connection (Linkerd's orig-proto upgrade), and the response comes back to the
HTTP/1 client as HTTP/1.1.

:class:`Upgrade` is one attempt of an :class:`~weft.proxy.http1.H1Exchange` (what it uses of the
exchange and of its :class:`~weft.proxy.http1.H1Server` is :class:`H1Request` and
:class:`H1Client`: ``http1`` imports this module, not the other way round). It is the stream's
:class:`~weft.proxy.h2.connection.Exchange` for the upstream connection (which counts nothing
itself: the HTTP/1 exchange keeps its endpoint, route and tap accounting, so the request is
counted as HTTP/1) and the owner of the stream's HTTP/1 side (a ``LegOwner``): what the upstream
leg receives is written to the client, framed as HTTP/1.

- The head becomes HTTP/2 fields with ``l5d-orig-proto`` (``weft.proxy.orig_proto``); a body
  becomes DATA frames, END_STREAM at its end (on the HEADERS when the request has none).
- The response head loses ``l5d-orig-proto``; its body is written with its ``content-length``,
  else chunked (HTTP/1.1 clients) or delimited by the connection's end (HTTP/1.0); ``HEAD``,
  204 and 304 have none. DATA beyond a ``content-length``, or END_STREAM short of it, cuts the
  client's connection rather than desynchronising it.
- Back-pressure: request body bytes not yet sent upstream pause reading from the client above
  64 KiB; response bytes written to a client whose transport is full hold the stream's credit.
- A failed response that the route may retry is dropped by the upstream connection (it calls
  :meth:`Upgrade.attempt_done` and :meth:`Upgrade.retry`); a stream the server refused
  (REFUSED_STREAM, a GOAWAY) is sent once more if the request has no body.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from weft.proxy import h1head, orig_proto
from weft.proxy.errors import ProxyError, upstream_reset
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
from weft.proxy.h2.heads import Head, block_fields
from weft.proxy.h2.hpack_codec import encode_field

if TYPE_CHECKING:
    from weft.proxy.context import ConnContext
    from weft.proxy.discovery import Endpoint
    from weft.proxy.dispatch import Dispatch
    from weft.proxy.h2.pool import ClientConn
    from weft.proxy.tap.registry import Tapped

HIGH_WATER = 65536  # request body bytes not yet sent upstream that pause the client
LOW_WATER = 16384  # ... and resume it
RESPONSE_CACHE_SIZE = 256  # entries of each head cache
# The exchange's own head stands for the request only where the upstream connection looks at it:
# a response to HEAD may announce a content-length its (empty) body does not have.
NO_HEAD = Head([])
HEAD_REQUEST = Head([(b":method", b"HEAD")])

_responses: dict[bytes, orig_proto.Response] = {}
# (block, client's version, no body, END_STREAM on it, close) -> the HTTP/1 head written
_heads: dict[tuple[bytes, bytes, bool, bool, bool], bytes] = {}


class H1Request(Protocol):
    """What an attempt uses of its HTTP/1 exchange (``http1.H1Exchange``)."""

    method: bytes
    url: bytes
    version: bytes
    headers: h1head.Headers
    known: h1head.RequestHead | None  # the facts of its head, when cached
    pending: list[bytes]
    has_body: bool
    head_request: bool
    keep_alive: bool
    request_done: bool
    response_started: bool
    response_done: bool
    dispatch: Dispatch | None
    tap: Tapped | None
    h2: Upgrade[Any] | None


E = TypeVar("E", bound=H1Request)
E_contra = TypeVar("E_contra", bound=H1Request, contravariant=True)


class H1Client(Protocol[E_contra]):
    """What an attempt uses of the HTTP/1 connection it answers (``http1.H1Server``)."""

    ctx: ConnContext
    transport: asyncio.Transport
    draining: bool
    writing_paused: bool
    corked: list[bytes | memoryview] | None

    def write(self, data: bytes | memoryview) -> None:
        """Write to the client (held while corked)."""

    def cork(self) -> None:
        """Hold writes until :meth:`uncork`."""

    def uncork(self) -> None:
        """Write what was held, in one piece."""

    def abort(self) -> None:
        """Close the client's connection now."""

    def respond_error(self, ex: E_contra, err: ProxyError) -> None:
        """Answer ``ex`` with the proxy's error response."""

    def response_complete(self, ex: E_contra) -> None:
        """``ex``'s response was written in full."""

    def exchange_done(self, ex: E_contra, status: int, error: str | None = None) -> None:
        """Count the end of ``ex``."""

    def attempt_done(
        self, ex: E_contra, status: int, error: str | None = None, now: float | None = None
    ) -> None:
        """Count the end of ``ex``'s attempt in flight."""

    def retry(self, ex: E_contra) -> None:
        """Send ``ex`` again (its route retries the response dropped)."""


def response_of(block: bytes) -> orig_proto.Response:
    """The HTTP/1 view of a forwarded response block (cached: servers repeat their heads).
    Raises :class:`~weft.proxy.orig_proto.MalformedHead`."""
    found = _responses.get(block)
    if found is None:
        found = orig_proto.response_from_fields(block_fields(block))
        if len(_responses) >= RESPONSE_CACHE_SIZE:
            _responses.clear()
        _responses[block] = found
    return found


_blocks: dict[tuple[bytes, bytes, bytes, tuple[tuple[bytes, bytes], ...]], bytes] = {}


def request_block(ex: H1Request) -> bytes:
    """The HTTP/2 header block of an HTTP/1 exchange's request (cached: clients repeat theirs)."""
    known = ex.known
    if known is not None:  # with the head it came from
        block = known.blocks.get(ex.version)
        if block is None:
            block = known.blocks[ex.version] = _encode_request(ex)
        return block
    key = (ex.method, ex.url, ex.version, tuple(ex.headers))
    block = _blocks.get(key)
    if block is None:
        block = _encode_request(ex)
        if len(_blocks) >= RESPONSE_CACHE_SIZE:
            _blocks.clear()
        _blocks[key] = block
    return block


def _encode_request(ex: H1Request) -> bytes:
    fields = orig_proto.request_fields(ex.method, ex.url, ex.headers, ex.version)
    return b"".join([encode_field(name, value) for name, value in fields])


class Upgrade(Exchange, Generic[E]):
    """One attempt of an HTTP/1 exchange as an HTTP/2 stream (see the module docstring)."""

    __slots__ = (
        "chunked",
        "dirty",
        "down",
        "endpoint",
        "ex",
        "held",
        "leg",
        "no_body",
        "paused",
        "reading_paused",
        "remaining",
        "resent",
        "started",
        "unsent",
        "up",
    )
    __deletable__ = ("leg", "up")  # mypyc: _detach drops both

    def __init__(self, down: H1Client[E], ex: E, now: float, resent: bool = False) -> None:
        super().__init__(now, HEAD_REQUEST if ex.head_request else NO_HEAD, b"")
        self.down = down
        self.ex = ex
        self.dispatch = ex.dispatch  # the upstream connection asks it whether to retry
        self.resent = resent
        self.paused = down.writing_paused  # CreditHolder: the client's transport is full
        self.held: list[Leg] = []
        self.unsent = 0  # request body bytes handed upstream and not yet sent
        self.reading_paused = False
        self.started = False  # the response head was written
        self.no_body = False
        self.chunked = False
        self.remaining = -1  # response body bytes its content-length still announces
        self.dirty = False

    # -- the request -------------------------------------------------------------------------

    def send(self, endpoint: Endpoint, conn: ClientConn) -> None:
        """Open the stream to ``endpoint`` on ``conn`` (from the pool, with room for it) and send
        the head and the body received so far."""
        ex = self.ex
        self.endpoint = endpoint
        ex.h2 = self
        up = self.up = conn.open_leg(self)
        leg = self.leg = Leg(self, 0, self, 0, False)
        leg.peer = up
        up.peer = leg
        pending, ex.pending = ex.pending, []
        complete = ex.request_done or not ex.has_body
        if complete and not pending:
            leg.recv_done = True
            conn.write_headers(up, request_block(ex), True)
        else:
            conn.write_headers(up, request_block(ex), False)
            for body in pending:
                self.body(body)
            if complete:
                self.end_request()
        flush_all()

    def body(self, data: bytes) -> None:
        """Send request body bytes; pause the client while too many wait to be sent."""
        up = self.up
        self.unsent += len(data)
        up.conn.send_data(up, data, False, self.leg)
        if self.unsent > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.down.transport.pause_reading()
        flush_all()

    def end_request(self) -> None:
        """The HTTP/1 request is complete: END_STREAM."""
        leg = self.leg
        if leg.recv_done:
            return
        leg.recv_done = True
        up = self.up
        up.conn.send_data(up, b"", True, leg)
        flush_all()

    def credit(self, leg: Leg, n: int, via: CreditHolder | None) -> None:
        """``n`` request body bytes went upstream (held while its transport is full)."""
        if via is not None and via.paused and not self.done:
            if not leg.held:
                via.held.append(leg)
            leg.held += n
        else:
            self.credit_stream(leg, n)

    def credit_stream(self, leg: Leg, n: int) -> None:
        """Request body bytes left the proxy: resume the client below the low-water mark."""
        self.unsent -= n
        if self.reading_paused and self.unsent <= LOW_WATER:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self.down.transport.resume_reading()

    # -- the response ------------------------------------------------------------------------

    def send_headers(self, leg: Leg, block: bytes, end: bool) -> None:
        """The response head (an interim 1xx, the final head, or trailers, which are dropped)."""
        if self.done:
            return
        if self.started:
            if end:
                self._complete()
            return
        try:
            response = response_of(block)
        except orig_proto.MalformedHead as exc:
            self._give_up(fr.PROTOCOL_ERROR)
            self._broken(f"malformed response: {exc}", "protocol_error")
            return
        ex = self.ex
        status = response.status
        if status < 200:
            if ex.version == b"1.1":
                head = h1head.response_head(
                    status, h1head.reason_phrase(status), response.headers, False, False, b"1.1"
                )
                self._write(head)
            return
        self.started = True
        ex.response_started = True
        no_body = self.no_body = ex.head_request or status in (204, 304)
        empty = end and not no_body and not response.has_length  # written with length 0
        has_length = response.has_length or empty
        if has_length and not no_body:
            self.remaining = response.length
        chunked = self.chunked = not no_body and not has_length and ex.version == b"1.1"
        if (not no_body and not has_length and not chunked) or self.down.draining:
            ex.keep_alive = False  # an HTTP/1.0 client's body ends with the connection
        close = not ex.keep_alive
        key = (block, ex.version, no_body, end, close)
        written = _heads.get(key)
        if written is None:
            written = h1head.response_head(
                status,
                h1head.reason_phrase(status),
                [*response.headers, (b"content-length", b"0")] if empty else response.headers,
                chunked,
                close,
                ex.version,
            )
            if len(_heads) >= RESPONSE_CACHE_SIZE:
                _heads.clear()
            _heads[key] = written
        if ex.tap is not None:
            ex.tap.response_init(time.monotonic(), status, response.headers.copy)
        self._write(written)
        if end:
            self._complete()

    def send_data(self, leg: Leg, payload: Chunk, end: bool, src: Leg) -> None:
        """Response body bytes: written to the client; ``src``'s credit follows its transport."""
        n = len(payload)
        if self.done or not self.started:
            src.conn.credit(src, n, None)
            if not self.done:  # DATA before a response head
                self._give_up(fr.PROTOCOL_ERROR)
                self._broken("DATA before the response head", "protocol_error")
            return
        if n and not self.no_body:
            if self.remaining >= 0:
                self.remaining -= n
                if self.remaining < 0:
                    src.conn.credit(src, n, None)
                    self._give_up(fr.PROTOCOL_ERROR)
                    self._broken("more DATA than its content-length", "protocol_error")
                    return
            ex = self.ex
            if ex.tap is not None:
                ex.tap.response_bytes += n
            self._write(h1head.chunk(payload) if self.chunked else payload)
        src.conn.credit(src, n, self)
        if end:
            self._complete()

    def _complete(self) -> None:
        """END_STREAM: the response is complete (a request still being sent is cancelled)."""
        if self.remaining > 0:
            self._broken("END_STREAM short of its content-length", "protocol_error")
            return
        if self.chunked:
            self._write(h1head.LAST_CHUNK)
        if not self.leg.recv_done:
            self._give_up(fr.CANCEL)
        ex, down = self.ex, self.down
        self._detach()
        ex.response_done = True
        down.exchange_done(ex, self.status)
        down.response_complete(ex)

    def _write(self, data: Chunk) -> None:
        """Write to the client, in one piece with whatever else this callback writes."""
        if not self.dirty:
            self.dirty = True
            self.down.cork()
            defer_flush(self)
        self.down.write(data)

    def shared(self) -> bool:
        """No: one request at a time goes to the client."""
        return False

    def flush(self) -> None:
        """End of the callback: write what the client gets (one send)."""
        self.dirty = False
        self.down.uncork()

    def resume(self) -> None:
        """The client's transport drained: give the upstream its held stream credit."""
        release_credit(self)

    # -- ends and failures -------------------------------------------------------------------

    def reset_leg(self, leg: Leg, code: int) -> None:
        """The upstream stream ended abruptly (a reset, a GOAWAY, its connection lost)."""
        if self.done:
            return
        refused = code == fr.REFUSED_STREAM and not self.started and not self.resent
        if refused and not self.ex.has_body:  # the server never saw it: safe to send again
            ctx = self.down.ctx
            conn: ClientConn | None = ctx.h2_pool.acquire(self.endpoint, ctx)
            if conn is not None:
                self._detach()
                Upgrade(self.down, self.ex, time.monotonic(), resent=True).send(self.endpoint, conn)
                return
        self._broken(f"stream reset ({fr.error_name(code)})", fr.error_name(code))

    def reset_after_end(self, leg: Leg) -> None:
        """The server sent the whole response, then RST_STREAM(NO_ERROR): already complete."""
        if not self.done:
            self._complete()

    def respond_error(self, leg: Leg, err: ProxyError) -> None:
        """No response head came (a failed connect, a connection lost): the client gets ``err``."""
        if self.done:
            return
        if self.started:
            self._broken(err.reason, "connection reset")
            return
        ex, down = self.ex, self.down
        self._detach()
        down.respond_error(ex, err)

    def retry(self, down: Leg) -> None:
        """The upstream dropped a failed response its route retries: send the request again."""
        ex = self.ex
        self._detach()
        self.down.retry(ex)

    def attempt_done(self, now: float, error: str | None = None) -> None:
        """Count this attempt (its response is dropped for a retry) as an HTTP/1 attempt."""
        self.down.attempt_done(self.ex, self.status, error, now)

    def finish(self, error: str | None = None) -> None:
        """The upstream ended the stream; anything not handled already is a failure."""
        if not self.done:
            self._broken("stream ended", error or "stream ended")

    def cancel(self, error: str | None) -> None:
        """Give the attempt up: a route timeout (``error`` None: the caller answers) or a client
        that left (counted with ``error``)."""
        if self.done:
            return
        ex = self.ex
        self._give_up(fr.CANCEL)
        self._detach()
        if error is not None:
            ex.response_done = True
            self.down.exchange_done(ex, self.status, error)
        flush_all()

    def _give_up(self, code: int) -> None:
        """Reset the upstream stream (it is not wanted any more)."""
        up = self.up
        up.conn.reset_leg(up, code)

    def _detach(self) -> None:
        """This attempt is over: the exchange no longer points at it, and it lets go of its
        legs (the upstream leg still reaches it until its stream closes), so that nothing of it
        is left in a reference cycle: freed by reference counting, not the garbage collector."""
        self.done = True
        leg = self.leg
        leg.closed = True
        leg.peer = None
        del self.leg, self.up
        self.ex.h2 = None
        self._resume_reading()

    def _broken(self, reason: str, error: str) -> None:
        """A failure: 502 if the client has no response head yet, else its connection is cut
        (its response cannot be completed)."""
        ex, down = self.ex, self.down
        started = self.started
        self._detach()
        if not started:
            down.respond_error(ex, upstream_reset(reason))
            return
        ex.response_done = True
        down.exchange_done(ex, self.status, error)
        down.corked = None  # what it would have got next is not sent
        down.abort()
