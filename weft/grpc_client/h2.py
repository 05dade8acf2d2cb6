"""The client side of one HTTP/2 connection carrying a few long-lived streams (no I/O).

Frames are parsed and checked by the proxy's :class:`~weft.proxy.h2.frames.FrameReader`, header
blocks decoded with its HPACK decoder (dynamic table included) and encoded with its stateless
encoder. What differs from forwarding is the shape: this side opens every stream, sends one small
request body, and consumes what comes back at once, so its receive windows are returned as soon
as bytes arrive, while its own sends wait for the server's windows.

The caller feeds received bytes to :meth:`ClientConnection.receive`, writes what
:meth:`ClientConnection.data_to_send` returns after every call, and hears about each stream
through the :class:`StreamHandler` it opened it with. A connection error raises
:class:`~weft.proxy.h2.frames.H2Error` from ``receive``, with GOAWAY already queued.
"""

from __future__ import annotations

from typing import Protocol

from weft.proxy.h2.frames import (
    CANCEL,
    COMPRESSION_ERROR,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    FLOW_CONTROL_ERROR,
    MAX_STREAM_ID,
    MAX_WINDOW,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS_ACK,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    FrameReader,
    H2Error,
    data_frame,
    goaway,
    headers_frames,
    ping_ack,
    rst_stream,
    settings_frame,
    window_update,
)
from weft.proxy.h2.hpack_codec import Field, HpackDecoder, HpackError, encode_block

RECEIVE_WINDOW = 1 << 20  # what the server may send ahead, per stream and on the connection


class StreamHandler(Protocol):
    """What happens on one stream, as the connection learns it."""

    def on_headers(self, fields: list[Field], end: bool) -> None:
        """A header block (response head or trailers); ``end``: the server's side is done."""

    def on_data(self, data: bytes, end: bool) -> None:
        """Body bytes; ``end``: the server's side is done."""

    def on_reset(self, code: int) -> None:
        """The stream ended with RST_STREAM ``code`` (the server's, or ours after its error);
        REFUSED_STREAM when a GOAWAY said it was never processed."""

    def on_lost(self, reason: str) -> None:
        """The connection ended before the stream did."""


class _Stream:
    __slots__ = ("handler", "local_done", "pending", "receive_window", "send_window")

    def __init__(self, handler: StreamHandler, send_window: int, body: bytes) -> None:
        self.handler = handler
        self.send_window = send_window
        self.receive_window = RECEIVE_WINDOW
        self.pending = body
        self.local_done = False


class ClientConnection(FrameReader):
    """One client connection's HTTP/2 state: streams, windows and settings."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = HpackDecoder()
        self.streams: dict[int, _Stream] = {}
        self.next_sid = 1
        self.max_streams = MAX_STREAM_ID  # the server's MAX_CONCURRENT_STREAMS, once it says
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = DEFAULT_MAX_FRAME
        self.send_window = DEFAULT_WINDOW
        self.receive_window = RECEIVE_WINDOW
        self.goaway_code: int | None = None  # set once either side sent GOAWAY
        self.sent_goaway = False
        self.goaway_last = MAX_STREAM_ID
        self._out: list[bytes] = [
            PREFACE,
            settings_frame(
                [(SETTINGS_ENABLE_PUSH, 0), (SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW)]
            ),
            window_update(0, RECEIVE_WINDOW - DEFAULT_WINDOW),
        ]

    # -- what the caller does ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes queued for the server since the last call."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def accepting(self) -> bool:
        """Whether new streams may ever be opened here (no GOAWAY, stream ids left)."""
        return self.goaway_code is None and self.next_sid <= MAX_STREAM_ID

    def has_room(self) -> bool:
        """Whether a stream may be opened now (within the server's concurrency limit)."""
        return self.accepting() and len(self.streams) < self.max_streams

    def open(self, handler: StreamHandler, fields: list[Field], body: bytes) -> int:
        """Open a stream with request head ``fields`` and the whole request ``body``; its id."""
        if not self.has_room():
            raise RuntimeError("no room for another stream on this connection")
        sid = self.next_sid
        self.next_sid += 2
        stream = self.streams[sid] = _Stream(handler, self.peer_initial_window, body)
        block = encode_block(fields)
        self._out.append(headers_frames(sid, block, False, self.peer_max_frame))
        self._send_body(sid, stream)
        return sid

    def reset(self, sid: int, code: int = CANCEL) -> None:
        """End stream ``sid`` from this side (a cancelled call); no-op once it has ended."""
        if self.streams.pop(sid, None) is not None:
            self._out.append(rst_stream(sid, code))

    def close(self, code: int = 0, debug: bytes = b"") -> list[StreamHandler]:
        """Queue RST_STREAM (CANCEL) for every open stream and GOAWAY (unless one was sent),
        and give up the streams; returns their handlers (to be told)."""
        for sid in self.streams:
            self._out.append(rst_stream(sid, CANCEL))
        if not self.sent_goaway:
            self.sent_goaway = True
            self._out.append(goaway(0, code, debug))
        if self.goaway_code is None:
            self.goaway_code = code
        handlers = [stream.handler for stream in self.streams.values()]
        self.streams.clear()
        return handlers

    def receive(self, data: bytes) -> None:
        """Consume bytes from the server; raises :class:`H2Error` on a connection error."""
        try:
            self.feed(data)
        except H2Error as exc:
            if not self.sent_goaway:
                self.sent_goaway = True
                self._out.append(goaway(0, exc.code))  # 0: the server opened no streams
            self.goaway_code = exc.code
            raise

    # -- sending -------------------------------------------------------------------------------

    def _send_body(self, sid: int, stream: _Stream) -> None:
        """Send as much of the stream's body as the windows allow; END_STREAM with the last."""
        while not stream.local_done:
            pending = stream.pending
            size = min(len(pending), stream.send_window, self.send_window, self.peer_max_frame)
            if size <= 0 and pending:
                return  # blocked until a WINDOW_UPDATE or SETTINGS
            last = size == len(pending)
            self._out.append(data_frame(sid, pending[:size], end_stream=last))
            stream.pending = pending[size:]
            stream.send_window -= size
            self.send_window -= size
            if last:
                stream.local_done = True

    def _send_blocked(self) -> None:
        for sid, stream in list(self.streams.items()):
            if not stream.local_done:
                self._send_body(sid, stream)

    # -- frames from the server ------------------------------------------------------------

    def _stream(self, sid: int) -> _Stream | None:
        """The open stream ``sid``; None for one that has ended; an error for one never opened."""
        stream = self.streams.get(sid)
        if stream is None and (sid % 2 == 0 or sid >= self.next_sid):
            raise H2Error(PROTOCOL_ERROR, f"frame on stream {sid}, which was never opened")
        return stream

    def _remote_end(self, sid: int, stream: _Stream) -> None:
        """The server ended the stream: it is gone (a stream is kept only while open)."""
        if stream.local_done:
            del self.streams[sid]
        else:  # answered before the request was sent: the rest is not wanted
            self.reset(sid, CANCEL)

    def on_data(self, sid: int, payload: memoryview, end: bool, flow_len: int) -> None:
        # Windows are topped up as soon as half is used, frame by frame, so a server cannot
        # send past them (a frame is at most 16 KiB); and nothing waits here to be consumed.
        self.receive_window -= flow_len
        if self.receive_window <= RECEIVE_WINDOW // 2:
            self._out.append(window_update(0, RECEIVE_WINDOW - self.receive_window))
            self.receive_window = RECEIVE_WINDOW
        stream = self._stream(sid)
        if stream is None:
            return
        stream.receive_window -= flow_len
        if not end and stream.receive_window <= RECEIVE_WINDOW // 2:
            self._out.append(window_update(sid, RECEIVE_WINDOW - stream.receive_window))
            stream.receive_window = RECEIVE_WINDOW
        if end:
            self._remote_end(sid, stream)
        stream.handler.on_data(bytes(payload), end)

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        try:
            fields = self.decoder.decode(block)  # always: the dynamic table must stay in step
        except HpackError as exc:
            raise H2Error(COMPRESSION_ERROR, str(exc)) from exc
        stream = self._stream(sid)
        if stream is None:
            return
        if end:
            self._remote_end(sid, stream)
        stream.handler.on_headers(fields, end)

    def on_rst(self, sid: int, code: int) -> None:
        stream = self._stream(sid)
        if stream is not None:
            del self.streams[sid]
            stream.handler.on_reset(code)

    def on_settings(self, settings: list[tuple[int, int]]) -> None:
        for key, value in settings:
            if key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
            elif key == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise H2Error(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE overflows a window")
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self.peer_max_frame = value
        self._out.append(SETTINGS_ACK)
        self._send_blocked()

    def on_ping(self, opaque: bytes) -> None:
        self._out.append(ping_ack(opaque))

    def on_goaway(self, last_sid: int, code: int) -> None:
        self.goaway_code = code
        self.goaway_last = min(self.goaway_last, last_sid)
        for sid in [sid for sid in self.streams if sid > self.goaway_last]:
            self.streams.pop(sid).handler.on_reset(REFUSED_STREAM)

    def on_window_update(self, sid: int, increment: int) -> None:
        if sid == 0:
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise H2Error(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self._send_blocked()
            return
        stream = self._stream(sid)
        if stream is None:
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self.on_stream_error(sid, FLOW_CONTROL_ERROR)
            return
        self._send_body(sid, stream)

    def on_stream_error(self, sid: int, code: int) -> None:
        stream = self.streams.pop(sid, None)
        self._out.append(rst_stream(sid, code))
        if stream is not None:
            stream.handler.on_reset(code)
