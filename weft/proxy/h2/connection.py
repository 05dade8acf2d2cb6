"""One HTTP/2 connection of a proxy hop: frame handling, flow control and stream forwarding.

An :class:`Exchange` is one proxied request/response; its two :class:`Leg` objects are the same
stream on the accepted connection and on the upstream one. What a leg receives is written to its
peer leg's connection. Flow control is end to end: the sender gets WINDOW_UPDATE credit back only
once the bytes have been handed to the other connection's transport; while that transport is
above its high-water mark (or not connected yet) the stream credit is held, and data the other
peer has no window for waits on the leg, so buffering is bounded by the windows we advertise.

Writes are batched: frames are appended to a connection's ``out`` list and every dirty connection
is written once, with one ``transport.write``, at the end of the callback, or at the end of the
turn of the event loop for a connection many streams share (:func:`flush_all`).

Stream states (RFC 9113 §5.1) are known without a record per stream: an open stream has a leg in
``streams``; a stream id the peer could still open (above the highest it opened, or of our
parity) is idle; any other is closed. A bounded record of recent resets tells the closed streams
apart where §5.1 does: after our RST_STREAM, the peer's frames already in flight are dropped
(HEADERS still decoded, DATA still credited); after the peer's RST_STREAM, DATA or HEADERS get
RST_STREAM(STREAM_CLOSED); after both END_STREAMs (or once the reset has left the record), they are
a connection error STREAM_CLOSED. Frames other than HEADERS and PRIORITY on an idle stream are a
connection error PROTOCOL_ERROR. DATA beyond the connection window we advertised is a connection
error FLOW_CONTROL_ERROR (so a peer cannot make us buffer more than it), and DATA that disagrees
with ``content-length`` makes the message malformed (§8.1.1).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from functools import partial
from typing import Protocol, cast

from weft.proxy.balance import Load
from weft.proxy.classify import classify
from weft.proxy.config import ProxyConfig
from weft.proxy.deadlines import Deadline
from weft.proxy.dispatch import Dispatch
from weft.proxy.errors import ProxyError, errno_label
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.heads import Head, block_fields, error_response
from weft.proxy.h2.hpack_codec import TABLE_SIZE_ZERO, HpackDecoder, HpackError
from weft.proxy.metrics import ConnStats, EndpointStats
from weft.proxy.routing import Logical
from weft.proxy.tap.registry import Tapped

log = logging.getLogger("weft.proxy.http2")

Chunk = bytes | memoryview
# A frame waiting on a leg: (payload, end_stream, source leg); source None means a header block.
Pending = tuple[Chunk, bool, "Leg | None"]

HEAD_CACHE_SIZE = 512  # blocks per connection
HEAD_CACHE_MAX_BLOCK = 1024  # bytes; bigger blocks are rarely repeated
RECENT_RESETS = 1024  # reset streams remembered per connection (see the module docstring)
LINGER = 1.0  # seconds a closed connection keeps reading, for the peer's EOF (see H2Conn.close)

# What a stream without a leg is (RFC 9113 §5.1).
IDLE = 0
RESET_BY_US = 1
RESET_BY_PEER = 2
NEVER_OPENED = 3  # skipped by the peer: a lower id than one it opened, never used
ENDED = 4  # closed by END_STREAM both ways (or reset long ago)
_pack_header = fr.FRAME_HEADER.pack
_DATA = fr.DATA
_HEADERS = fr.HEADERS
_END_HEADERS = fr.END_HEADERS
_MAX_WINDOW = fr.MAX_WINDOW


class Flushable(Protocol):
    """Something that queues output during a callback and writes it at its end."""

    def flush(self) -> None:
        """Write out what was queued."""

    def shared(self) -> bool:
        """Whether other callbacks of this turn of the event loop are likely to write to it
        too (several streams in flight), so that its writes had better wait for them."""


# Module-wide: every HTTP/2 connection of the process runs on the one event loop thread.
_dirty: list[Flushable] = []  # written to during this callback
_later: list[Flushable] = []  # flushed at the end of this turn of the loop
_later_loop: asyncio.AbstractEventLoop | None = None


def flush_all() -> None:
    """Write out what every connection queued during this callback (one write each).

    A connection with several streams in flight (an upstream connection shared by many clients,
    which each write to it in a callback of their own) is written once at the end of the turn
    of the event loop instead, after every I/O callback of it: one TLS record and one ``send``
    for all of them.
    """
    global _later_loop
    while _dirty:
        conn = _dirty.pop()
        if conn.shared():
            # One loop runs at a time on this thread: the last one seen, while it runs, is the
            # running one (asyncio.get_running_loop() costs a getpid() syscall).
            loop = _later_loop
            if loop is None or not loop.is_running():
                loop = _later_loop = asyncio.get_running_loop()
                _later.clear()  # only ever left by a loop that stopped before flushing it
            if not _later:
                loop.call_soon(_flush_later)
            _later.append(conn)
        else:
            conn.flush()


def _flush_later() -> None:
    while _later:
        _later.pop().flush()


def defer_flush(conn: Flushable) -> None:
    """Have ``conn`` flushed with the HTTP/2 connections at the end of this callback (the HTTP/1
    sides bridged to HTTP/2 batch their writes this way too)."""
    _dirty.append(conn)


class Keeper(Protocol):
    """Takes what a leg receives, besides its peer: a request's :class:`Dispatch` keeps its body
    for a retry; a tapped response's counter counts its bytes and keeps its trailers."""

    def keep(self, data: Chunk) -> None:
        """DATA payload received on the leg."""

    def trailers(self, block: bytes) -> None:
        """A trailers block received on the leg (as forwarded)."""


class LegOwner(Protocol):
    """What the HTTP/2 layer calls on the owner of a leg it forwards to: an :class:`H2Conn`, or
    the HTTP/1 side of a request carried over HTTP/2 (``weft.proxy.upgrade`` outbound,
    ``weft.proxy.downgrade`` inbound)."""

    def send_headers(self, leg: Leg, block: bytes, end: bool) -> None:
        """Send a header block (statelessly encoded) on ``leg``."""

    def send_data(self, leg: Leg, payload: Chunk, end: bool, src: Leg) -> None:
        """Send ``payload``, received on ``src``, on ``leg``; credit ``src`` once it is sent."""

    def reset_leg(self, leg: Leg, code: int) -> None:
        """End ``leg`` abruptly with an HTTP/2 error code."""

    def reset_after_end(self, leg: Leg) -> None:
        """The other side sent all it had, then RST_STREAM(NO_ERROR)."""

    def respond_error(self, leg: Leg, err: ProxyError) -> None:
        """Answer ``leg``'s request with the proxy's own error response."""

    def retry(self, down: Leg) -> None:
        """Send ``down``'s request again (the side that accepted the request)."""

    def credit(self, leg: Leg, n: int, via: CreditHolder | None) -> None:
        """``n`` bytes received on ``leg`` were handed on to ``via``."""

    def credit_stream(self, leg: Leg, n: int) -> None:
        """Stream credit for ``leg`` that waited on a full transport."""


class CreditHolder(Protocol):
    """A side whose transport can be full: stream credit for bytes written to it waits in
    ``held`` while ``paused`` (see :meth:`H2Conn.credit`)."""

    paused: bool
    held: list[Leg]


def release_credit(holder: CreditHolder) -> None:
    """``holder``'s transport drained: give the legs it held back their stream credit."""
    holder.paused = False
    held, holder.held = holder.held, []
    for leg in held:
        n, leg.held = leg.held, 0
        if n:
            leg.conn.credit_stream(leg, n)
    flush_all()


class Exchange:
    """One proxied request and its response: what its metrics, routing and retries need,
    shared by both legs. ``stats`` and ``load`` belong to the attempt in flight; ``tap`` is set
    only when a tap matched the request."""

    __slots__ = (
        "attempt_start",
        "block",
        "dispatch",
        "done",
        "grpc",
        "grpc_status",
        "head",
        "load",
        "logical",
        "start",
        "stats",
        "status",
        "tap",
        "timer",
    )

    def __init__(self, start: float, head: Head, block: bytes) -> None:
        self.start = start
        self.attempt_start = start
        self.head = head
        self.block = block  # the request head as sent upstream
        self.grpc = head.grpc
        self.status = 0
        self.grpc_status: int | None = None
        self.done = False
        self.stats: EndpointStats | None = None
        self.load: Load | None = None
        self.logical: Logical | None = None
        self.dispatch: Dispatch | None = None
        self.timer: Deadline | None = None
        self.tap: Tapped | None = None

    def attempt_done(self, now: float, error: str | None = None) -> None:
        """Count the end of the attempt in flight (endpoint and ``route_actual`` series)."""
        grpc_status = None if error else self.grpc_status
        status = self.status
        latency = (now - self.attempt_start) * 1000.0
        load = self.load
        if load is not None:
            self.load = None
            load.done(latency, now)
            if self.dispatch is not None:
                self.dispatch.attempt_done(now, latency, status, grpc_status, error)
        stats = self.stats
        if stats is not None:
            self.stats = None
            cls = classify(status, grpc_status, error)
            stats.response(now, latency, status, cls, grpc_status, error)

    def finish(self, error: str | None = None) -> None:
        """Count the response (once): complete, or ended by a stream ``error``."""
        if self.done:
            return
        self.done = True
        now = time.monotonic()
        self.attempt_done(now, error)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        dispatch = self.dispatch
        if dispatch is not None:
            grpc_status = None if error else self.grpc_status
            latency = (now - self.start) * 1000.0
            dispatch.done(now, latency, self.status, grpc_status, error)
        if self.tap is not None:
            reset = fr.error_code(error) if error else None
            self.tap.response_end(now, None if reset is not None else self.grpc_status, reset)


class Leg:
    """An exchange's stream on one connection, with its send window and anything waiting on it."""

    __slots__ = (
        "blocked",
        "closed",
        "conn",
        "early",
        "exchange",
        "held",
        "keep",
        "peer",
        "precredited",
        "queue",
        "recv_done",
        "remaining",
        "reset_when_sent",
        "send_done",
        "sid",
        "unacked",
        "window",
    )

    def __init__(
        self, conn: LegOwner, sid: int, exchange: Exchange, window: int, recv_done: bool
    ) -> None:
        self.conn = conn
        self.sid = sid
        self.exchange = exchange
        self.window = window  # what the peer lets us send on this stream
        self.recv_done = recv_done  # END_STREAM (or reset) received
        self.remaining = -1  # body bytes content-length still announces (-1: no content-length)
        self.send_done = False  # END_STREAM written
        self.closed = False  # no longer in conn.streams
        self.peer: Leg | None = None
        self.queue: deque[Pending] | None = None
        self.blocked = False  # waiting in conn.blocked for connection window
        self.unacked = 0  # consumed bytes not yet credited with WINDOW_UPDATE
        self.held = 0  # consumed bytes whose credit waits for the peer transport to drain
        self.reset_when_sent = False  # RST_STREAM(NO_ERROR) once END_STREAM is written
        # Request frames received before the request was routed: (payload, end, is_headers).
        self.early: list[tuple[bytes, bool, bool]] | None = None
        self.keep: Keeper | None = None  # takes received bytes (see Keeper)
        self.precredited = 0  # bytes to be sent again whose credit was already given


class H2Conn(fr.FrameReader, asyncio.Protocol):
    """What both ends of a hop share: framing, HPACK, windows, legs and batched writes."""

    upstream = False  # True on connections the proxy dialled: frames received are responses
    # The code a stream error here resets the exchange's other leg with.
    peer_error = fr.CANCEL

    def __init__(self, config: ProxyConfig, stats: ConnStats) -> None:
        super().__init__(max_block=config.max_head_bytes, expect_settings=True)
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Leg] = {}
        self.out: list[Chunk] = []
        self.dirty = False
        self.paused = True  # not connected yet, or the transport's buffer is above high-water
        self.closing = False
        self.failed = False  # a connection error's GOAWAY was written
        self.held: list[Leg] = []  # legs of *other* connections whose credit waits on us
        self.blocked: list[Leg] = []  # our legs waiting for connection window
        self.window = fr.DEFAULT_WINDOW  # connection send window
        self.peer_window = fr.DEFAULT_WINDOW  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self.peer_max_frame = fr.DEFAULT_MAX_FRAME
        self.peer_max_streams = fr.MAX_STREAM_ID
        self.hpack_prefix = TABLE_SIZE_ZERO
        self.stream_recv_window = max(1, min(config.h2_initial_stream_window, _MAX_WINDOW))
        self.conn_recv_window = max(
            fr.DEFAULT_WINDOW, min(config.h2_initial_connection_window, _MAX_WINDOW)
        )
        self.stream_threshold = max(1, self.stream_recv_window // 2)
        self.conn_threshold = self.conn_recv_window // 2
        # What the peer may send before more WINDOW_UPDATEs: the connection window, raised at
        # once by local_settings(). (Stream windows are not checked apart: the connection's
        # bounds what a peer can make us hold, and RFC 9113 §6.9.1 leaves the check optional.)
        self.recv_space = self.conn_recv_window
        self.resets: dict[int, bool] = {}  # recent resets: stream id -> whether we sent it
        self.unacked = 0
        self.decoder = HpackDecoder(max_list_size=config.max_head_bytes)
        self.heads: dict[bytes, Head] = {}
        self.heads_generation = 0
        self.last_sid = 0  # highest stream id the peer opened

    def local_settings(self, *more: tuple[int, int]) -> bytes:
        """Our SETTINGS (push off, our stream window, any ``more``) and the connection window
        increase."""
        frames = fr.settings_frame(
            (
                (fr.SETTINGS_ENABLE_PUSH, 0),
                (fr.SETTINGS_INITIAL_WINDOW_SIZE, self.stream_recv_window),
                (fr.SETTINGS_MAX_HEADER_LIST_SIZE, self.decoder.max_list_size),
                *more,
            )
        )
        extra = self.conn_recv_window - fr.DEFAULT_WINDOW
        return frames + fr.window_update(0, extra) if extra else frames

    # --- output -------------------------------------------------------------------------------

    def write(self, data: Chunk) -> None:
        """Queue bytes for the end-of-callback flush."""
        self.out.append(data)
        if not self.dirty:
            self.dirty = True
            _dirty.append(self)

    def write_frame(self, header: bytes, payload: Chunk) -> None:
        """Queue a frame's header and its payload (what two :meth:`write` calls would do)."""
        out = self.out
        out.append(header)
        out.append(payload)
        if not self.dirty:
            self.dirty = True
            _dirty.append(self)

    def shared(self) -> bool:
        """Several streams are in flight here."""
        return len(self.streams) > 1

    def flush(self) -> None:
        """Hand everything queued to the transport in one write."""
        self.dirty = False
        out = self.out
        transport = self.transport
        if not out or transport is None:
            return
        if self.closing:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.stats.written += len(data)
        transport.write(data)

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.paused = False
        self.release_held()
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.stats.read += len(data)
        if self.closing:
            return
        try:
            self.feed(data)
        except fr.H2Error as err:
            self.fail(err)
        flush_all()

    def eof_received(self) -> bool | None:
        return None  # HTTP/2 has no half-close: let the transport close

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.release_held()
        flush_all()

    def connection_lost(self, exc: Exception | None) -> None:
        was_closing = self.closing
        self.closing = True
        self.paused = True
        self.stats.close(errno_label(exc))
        if not was_closing:
            self.release_streams(exc)
        flush_all()

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush what is queued and close; streams still open are released at once.

        The connection ends with our EOF, then lingers, reading and dropping what the peer
        still sends, until the peer's EOF or LINGER seconds: closing a socket with unread input
        sends a TCP reset, which can destroy our last frames (a GOAWAY) before the peer reads
        them.
        """
        if self.closing:
            return
        self.flush()
        self.closing = True
        self.release_streams(None)
        transport = self.transport
        if transport is None:
            return
        if transport.can_write_eof() and not transport.is_closing():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER, transport.close)
        else:
            transport.close()

    def fail(self, err: fr.H2Error) -> None:
        """The peer broke the protocol: GOAWAY with the error code, then close."""
        log.info("http/2 connection error (%s): %s", fr.error_name(err.code), err)
        self.write(fr.goaway(self.last_sid, err.code, str(err).encode()[:200]))
        self.failed = True
        self.close()

    def release_streams(self, exc: Exception | None) -> None:
        """The connection is gone: end every exchange that still has a leg here."""
        raise NotImplementedError

    def stream_closed(self) -> None:
        """A leg left ``streams`` (hook for idle and drain handling)."""

    def retry(self, down: Leg) -> None:
        """Send ``down``'s request again (connections that accepted requests only)."""
        raise NotImplementedError

    # --- flow control -------------------------------------------------------------------------

    def credit(self, leg: Leg, n: int, via: CreditHolder | None) -> None:
        """``n`` bytes received on ``leg`` went on to ``via``: give the sender its window back.

        The stream-level credit waits while ``via``'s transport is full (or not connected).
        """
        if leg.precredited:
            taken = min(n, leg.precredited)
            leg.precredited -= taken
            n -= taken
            if not n:
                return
        self.credit_connection(n)
        if via is not None and via.paused and not (leg.recv_done or leg.closed):
            if not leg.held:
                via.held.append(leg)
            leg.held += n
        else:
            self.credit_stream(leg, n)

    def release_held(self) -> None:
        """Our transport drained: give back the stream credit held for legs forwarding to us."""
        held = self.held
        if not held:
            return
        self.held = []
        for leg in held:
            n = leg.held
            leg.held = 0
            if n:
                leg.conn.credit_stream(leg, n)

    def credit_connection(self, n: int) -> None:
        """Connection-level credit, sent once half the connection window is used."""
        unacked = self.unacked + n
        if unacked >= self.conn_threshold:
            self.write(fr.window_update(0, unacked))
            self.recv_space += unacked
            unacked = 0
        self.unacked = unacked

    def credit_stream(self, leg: Leg, n: int) -> None:
        """Stream-level credit, sent once half the stream window is used."""
        if leg.recv_done or leg.closed:
            return
        unacked = leg.unacked + n
        if unacked >= self.stream_threshold:
            self.write(fr.window_update(leg.sid, unacked))
            unacked = 0
        leg.unacked = unacked

    # --- sending on a leg ---------------------------------------------------------------------

    def send_data(self, leg: Leg, payload: Chunk, end: bool, src: Leg) -> None:
        """Send ``payload`` (received on ``src``) on ``leg``; queue what the windows don't allow."""
        n = len(payload)
        if leg.closed:
            src.conn.credit(src, n, None)
            return
        if leg.queue or n > leg.window or n > self.window or n > self.peer_max_frame:
            if leg.queue is None:
                leg.queue = deque()
            leg.queue.append((payload, end, src))
            self.drain_leg(leg)
            return
        if n:
            leg.window -= n
            self.window -= n
            self.write_frame(_pack_header(n >> 16, n & 0xFFFF, _DATA, end, leg.sid), payload)
            src.conn.credit(src, n, self)
        else:
            self.write(_pack_header(0, 0, _DATA, end, leg.sid))
        if end:
            self.sent_end(leg)

    def send_headers(self, leg: Leg, block: bytes, end: bool) -> None:
        """Send a header block on ``leg`` (behind any DATA still waiting for window)."""
        if leg.closed:
            return
        if leg.queue:
            leg.queue.append((block, end, None))
            return
        self.write_headers(leg, block, end)

    def write_headers(self, leg: Leg, block: bytes, end: bool) -> None:
        prefix = self.hpack_prefix
        if prefix:
            block = prefix + block
            self.hpack_prefix = b""
        n = len(block)
        if n <= self.peer_max_frame:
            header = _pack_header(n >> 16, n & 0xFFFF, _HEADERS, _END_HEADERS | end, leg.sid)
            self.write_frame(header, block)
        else:
            self.write(fr.headers_frames(leg.sid, block, end, self.peer_max_frame))
        if end:
            self.sent_end(leg)

    def drain_leg(self, leg: Leg) -> None:
        """Send as much of ``leg``'s queue as the stream and connection windows allow."""
        queue = leg.queue
        while queue:
            payload, end, src = queue[0]
            if src is None:
                queue.popleft()
                self.write_headers(leg, bytes(payload), end)
                continue
            n = len(payload)
            k = min(n, leg.window, self.window, self.peer_max_frame)
            if n and k <= 0:
                if self.window <= 0 and not leg.blocked:
                    leg.blocked = True
                    self.blocked.append(leg)
                return
            last = end and k == n
            if k:
                leg.window -= k
                self.window -= k
                header = _pack_header(k >> 16, k & 0xFFFF, _DATA, last, leg.sid)
                self.write_frame(header, payload[:k] if k < n else payload)
            else:
                self.write(_pack_header(0, 0, _DATA, last, leg.sid))
            if k == n:
                queue.popleft()
            else:
                queue[0] = (payload[k:], end, src)
            if k:
                src.conn.credit(src, k, self)
            if last:
                self.sent_end(leg)

    def unblock(self) -> None:
        """The connection window grew: resume the legs that waited for it, in order."""
        blocked = self.blocked
        self.blocked = []
        for leg in blocked:
            leg.blocked = False
            if not leg.closed and leg.queue:
                self.drain_leg(leg)

    def sent_end(self, leg: Leg) -> None:
        leg.send_done = True
        if leg.recv_done:
            self.close_leg(leg)
        elif leg.reset_when_sent:
            self.reset_leg(leg, fr.NO_ERROR)

    def reset_after_end(self, leg: Leg) -> None:
        """The other side sent all it had, then RST_STREAM(NO_ERROR): deliver what still waits on
        ``leg``, then tell our peer to stop sending (RFC 9113 §8.1)."""
        if leg.closed:
            return
        if leg.send_done:
            self.reset_leg(leg, fr.NO_ERROR)
        else:
            leg.reset_when_sent = True

    def close_leg(self, leg: Leg) -> None:
        """Both directions of ``leg`` ended normally."""
        if leg.closed:
            return
        leg.closed = True
        del self.streams[leg.sid]
        peer = leg.peer
        if peer is not None and peer.closed:  # the exchange is over: no reference cycle left
            leg.peer = peer.peer = None
        self.stream_closed()

    def discard_leg(self, leg: Leg) -> None:
        """Forget ``leg`` abruptly; bytes waiting on it are dropped and credited to their sender."""
        if leg.closed:
            return
        leg.closed = True
        self.streams.pop(leg.sid, None)
        queue = leg.queue
        if queue:
            leg.queue = None
            for payload, _end, src in queue:
                if src is not None:
                    src.conn.credit(src, len(payload), None)
        self.stream_closed()

    def reset_leg(self, leg: Leg, code: int) -> None:
        """RST_STREAM ``leg`` towards our peer and forget it."""
        if leg.closed:
            return
        self.refuse(leg.sid, code)
        self.discard_leg(leg)

    def refuse(self, sid: int, code: int) -> None:
        """RST_STREAM ``sid``; frames the peer sent before it learns of it will be dropped."""
        self.write(fr.rst_stream(sid, code))
        self.note_reset(sid, True)

    def note_reset(self, sid: int, by_us: bool) -> None:
        """Remember that stream ``sid`` was reset (by us or by the peer), for a while."""
        resets = self.resets
        resets[sid] = by_us
        if len(resets) > RECENT_RESETS:
            del resets[next(iter(resets))]

    def closed_state(self, sid: int) -> int:
        """What stream ``sid``, which has no leg, is: idle, or closed in one of §5.1's ways."""
        by_us = self.resets.get(sid)
        if by_us is not None:
            return RESET_BY_US if by_us else RESET_BY_PEER
        return self.unopened_state(sid)

    def unopened_state(self, sid: int) -> int:
        """IDLE, NEVER_OPENED or ENDED for stream ``sid``, which has no leg and no reset."""
        raise NotImplementedError

    def malformed(self, leg: Leg, reason: str) -> None:
        """The message received on ``leg`` is malformed (RFC 9113 §8.1.1): it is not forwarded
        further, and its stream is reset with PROTOCOL_ERROR."""
        log.info("malformed http/2 message on stream %d: %s", leg.sid, reason)
        self.reset_exchange(leg, fr.PROTOCOL_ERROR, self.peer_error)

    def reset_exchange(self, leg: Leg, code: int, peer_code: int) -> None:
        """End ``leg``'s exchange: RST ``leg`` with ``code`` (unless it came from our peer, -1) and
        its peer leg with ``peer_code``; the response is counted as ended by that error."""
        completed = leg.recv_done
        if code < 0:
            self.discard_leg(leg)
        else:
            self.reset_leg(leg, code)
        peer = leg.peer
        if peer is not None:
            if completed and peer_code == fr.NO_ERROR:
                peer.conn.reset_after_end(peer)
            else:
                peer.conn.reset_leg(peer, peer_code)
        leg.exchange.finish(fr.error_name(peer_code if code < 0 else code))

    def respond_error(self, leg: Leg, err: ProxyError) -> None:
        """Answer ``leg``'s request with the proxy's own error response."""
        if leg.closed:
            return
        exchange = leg.exchange
        status, grpc_status, block = error_response(err, exchange.grpc)
        exchange.status = status
        exchange.grpc_status = grpc_status
        if exchange.tap is not None:
            exchange.tap.response_init(time.monotonic(), status, partial(block_fields, block))
        self.send_headers(leg, block, True)
        exchange.finish(err.error)
        if not leg.closed:
            self.reset_leg(leg, fr.NO_ERROR)  # the request body is no longer wanted
        peer = leg.peer
        if peer is not None:
            peer.conn.reset_leg(peer, fr.CANCEL)

    # --- receiving ----------------------------------------------------------------------------

    def head_of(self, block: bytes) -> Head:
        """Decode ``block`` (always: the HPACK table must follow the peer) into a :class:`Head`.

        A block that left the dynamic table unchanged decodes the same way until the table
        changes, so its Head is cached: a steady client sends the same indexed blocks.
        """
        decoder = self.decoder
        heads = self.heads
        if decoder.generation == self.heads_generation:
            head = heads.get(block)
            if head is not None:
                return head
        try:
            head = Head(decoder.decode(block))
        except HpackError as exc:
            raise fr.H2Error(fr.COMPRESSION_ERROR, str(exc)) from exc
        if decoder.generation != self.heads_generation:
            heads.clear()
            self.heads_generation = decoder.generation
        elif len(heads) < HEAD_CACHE_SIZE and len(block) <= HEAD_CACHE_MAX_BLOCK:
            heads[block] = head
        return head

    def forward_headers(self, leg: Leg, head: Head, end: bool) -> None:
        """Pass a header block received on ``leg`` to its peer leg."""
        if leg.recv_done:
            self.on_stream_error(leg.sid, fr.STREAM_CLOSED)
            return
        if end:
            leg.recv_done = True
        if leg.keep is not None:
            leg.keep.trailers(head.block)
        peer = leg.peer
        if peer is not None:
            peer.conn.send_headers(peer, head.block, end)
        elif leg.early is not None:
            leg.early.append((head.block, end, True))
        if end and leg.send_done:
            self.close_leg(leg)

    def forward_trailers(self, leg: Leg, head: Head, end: bool) -> None:
        """Pass on trailers received on ``leg`` unless they make its message malformed: they
        must end the stream, hold no pseudo-header field, and complete any content-length.
        (What forward_headers does, for trailers: every gRPC response has some.)"""
        if leg.recv_done:
            self.on_stream_error(leg.sid, fr.STREAM_CLOSED)
            return
        if not end or head.trailers_error or leg.remaining > 0:
            reason = head.trailers_error or "content-length exceeds the body"
            if not end:
                reason = "HEADERS without END_STREAM after the message head"
            self.malformed(leg, reason)
            return
        leg.recv_done = True
        block = head.block
        if leg.keep is not None:
            leg.keep.trailers(block)
        peer = leg.peer
        if peer is not None:
            peer.conn.send_headers(peer, block, True)
        elif leg.early is not None:
            leg.early.append((block, True, True))
        if leg.send_done:
            self.close_leg(leg)

    def stray_headers(self, sid: int) -> None:
        """A header block (decoded already) on stream ``sid``, which is not open and which this
        block cannot open."""
        state = self.closed_state(sid)
        if state == RESET_BY_US:
            return  # sent before our RST_STREAM arrived
        if state == RESET_BY_PEER:
            self.write(fr.rst_stream(sid, fr.STREAM_CLOSED))
        elif state == ENDED:
            raise fr.H2Error(fr.STREAM_CLOSED, f"HEADERS on closed stream {sid}")
        else:
            raise fr.H2Error(fr.PROTOCOL_ERROR, f"HEADERS on unexpected stream {sid}")

    def on_data(self, sid: int, payload: memoryview, end: bool, flow_len: int) -> None:
        space = self.recv_space - flow_len
        if space < 0:
            raise fr.H2Error(fr.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self.recv_space = space
        leg = self.streams.get(sid)
        if leg is None or leg.recv_done:
            self.credit_connection(flow_len)
            self.stray_data(sid, leg)
            return
        n = len(payload)
        if leg.remaining >= 0:
            remaining = leg.remaining - n
            if remaining < 0 or (end and remaining):
                self.credit_connection(flow_len)
                self.malformed(leg, "DATA disagrees with content-length")
                return
            leg.remaining = remaining
        if end:
            leg.recv_done = True
        peer = leg.peer
        if flow_len != n:
            self.credit(leg, flow_len - n, None)
        if leg.keep is not None:
            leg.keep.keep(payload)
        if peer is not None:
            peer.conn.send_data(peer, payload, end, leg)
        elif leg.early is not None:
            leg.early.append((bytes(payload), end, False))  # credited once sent upstream
        else:
            self.credit(leg, n, None)
        if end:
            if self.upstream:
                leg.exchange.finish()
            if leg.send_done:
                self.close_leg(leg)

    def stray_data(self, sid: int, leg: Leg | None) -> None:
        """DATA (credited already) on stream ``sid``, which is not open for receiving."""
        if leg is not None:  # half-closed (remote)
            self.on_stream_error(sid, fr.STREAM_CLOSED)
            return
        state = self.closed_state(sid)
        if state == IDLE:
            raise fr.H2Error(fr.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
        if state == ENDED:
            raise fr.H2Error(fr.STREAM_CLOSED, f"DATA on closed stream {sid}")
        if state != RESET_BY_US:
            self.write(fr.rst_stream(sid, fr.STREAM_CLOSED))

    def on_rst(self, sid: int, code: int) -> None:
        leg = self.streams.get(sid)
        if leg is not None:
            self.note_reset(sid, False)
            self.reset_exchange(leg, -1, code)
        elif self.closed_state(sid) == IDLE:
            raise fr.H2Error(fr.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")

    def on_stream_error(self, sid: int, code: int) -> None:
        leg = self.streams.get(sid)
        if leg is not None:
            self.reset_exchange(leg, code, self.peer_error)
            return
        state = self.closed_state(sid)
        if state == IDLE:  # RST_STREAM may not name an idle stream (§6.4): end the connection
            raise fr.H2Error(code, f"stream error on idle stream {sid}")
        if state != RESET_BY_US:
            self.refuse(sid, code)

    def on_headers_error(self, sid: int, block: bytes, code: int) -> None:
        self.head_of(block)  # the HPACK table follows every block
        leg = self.streams.get(sid)
        if leg is not None:
            self.malformed(leg, "the stream depends on itself")
        elif self.opens(sid):
            self.refuse(sid, code)
        else:
            self.stray_headers(sid)

    def opens(self, sid: int) -> bool:
        """Whether a header block on ``sid`` (not open) opens a new stream; if it does, the
        stream now counts as opened."""
        return False

    def on_ping(self, opaque: bytes) -> None:
        self.write(fr.ping_ack(opaque))

    def on_window_update(self, sid: int, increment: int) -> None:
        if not sid:
            window = self.window + increment
            if window > _MAX_WINDOW:
                raise fr.H2Error(fr.FLOW_CONTROL_ERROR, "connection window overflow")
            self.window = window
            if self.blocked:
                self.unblock()
            return
        leg = self.streams.get(sid)
        if leg is None:
            if self.closed_state(sid) == IDLE:
                raise fr.H2Error(fr.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
            return
        window = leg.window + increment
        if window > _MAX_WINDOW:
            self.reset_exchange(leg, fr.FLOW_CONTROL_ERROR, self.peer_error)
            return
        leg.window = window
        if leg.queue:
            self.drain_leg(leg)

    def on_settings(self, settings: list[tuple[int, int]]) -> None:
        for key, value in settings:
            if key == fr.SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_window
                self.peer_window = value
                for leg in self.streams.values():
                    leg.window += delta
                    if leg.window > _MAX_WINDOW:
                        raise fr.H2Error(fr.FLOW_CONTROL_ERROR, "stream window overflow")
                if delta > 0:
                    for leg in list(self.streams.values()):
                        if leg.queue:
                            self.drain_leg(leg)
            elif key == fr.SETTINGS_MAX_FRAME_SIZE:
                self.peer_max_frame = value
            elif key == fr.SETTINGS_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
            elif key == fr.SETTINGS_HEADER_TABLE_SIZE:
                self.hpack_prefix = TABLE_SIZE_ZERO
        self.write(fr.SETTINGS_ACK)
