"""One connection to the control server: ``io.linkerd.proxy.tap.Tap/Observe`` over HTTP/2.

HTTP/2 and gRPC's framing come from the ``h2`` library, and ``ObserveRequest`` and the events
from protobuf; :mod:`weft.proxy.tap.server` imports this module on the first connection. An
Observe call's events wait in its :class:`TapStream` queue until the client's flow-control window
lets them go; the stream ends with status OK once its limit is reached and those requests' events
are sent, and at once (the tap removed) when the client cancels or disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from google.protobuf.message import DecodeError

from weft.api import tap_pb2
from weft.proxy.tap import wire
from weft.proxy.tap.match import MatchError, compile_match
from weft.proxy.tap.registry import Taps
from weft.proxy.tap.stream import TapStream
from weft.proxy.tls import peer_identity

log = logging.getLogger("weft.proxy.tap")

OBSERVE = b"/io.linkerd.proxy.tap.Tap/Observe"
MAX_REQUEST_BYTES = 64 * 1024
# Events wait this long (seconds) for others to share their HTTP/2 frame, TLS record and write.
SEND_DELAY = 0.01
_GRPC_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


class _Call:
    """One request stream on a control connection."""

    __slots__ = ("reader", "sid", "tap")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.reader = wire.MessageReader(MAX_REQUEST_BYTES)
        self.tap: TapStream | None = None


class Server(Protocol):
    """What a connection uses of the control server that accepted it (``server.ControlServer``,
    which imports this module on its first connection)."""

    taps: Taps
    conns: set[ControlConnection]
    next_base: int  # the next tap's id base

    def denial(self, client_id: str | None) -> str | None:
        """Why a client with this identity may not tap (None: it may)."""


class ControlConnection(asyncio.Protocol):
    """An HTTP/2 connection from a tap client (after its TLS handshake)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.calls: dict[int, _Call] = {}
        self.client_id: str | None = None
        self.peer = ""
        self.paused = False
        self.scheduled = False
        self.transport: asyncio.Transport | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.client_id = peer_identity(transport.get_extra_info("ssl_object"))
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.server.conns.add(self)
        self.conn.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.info("tap server: HTTP/2 error from %s: %s", self.peer, exc)
            self.flush()
            self.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.on_request(event.stream_id, event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.on_data(event.stream_id, event.data)
            elif isinstance(event, h2.events.StreamEnded):
                self.on_request_end(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.end_call(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.close()
                return
        self.send_pending()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.send_pending()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        for sid in list(self.calls):
            self.end_call(sid)

    # --- calls --------------------------------------------------------------------------------

    def on_request(self, sid: int, headers: list[tuple[bytes, bytes]]) -> None:
        denial = self.server.denial(self.client_id)
        if denial is not None:
            log.warning("tap server: refused a call from %s: %s", self.peer, denial)
            self.finish(sid, wire.PERMISSION_DENIED, denial)
            return
        path = next((v for n, v in headers if n == b":path"), b"")
        method = next((v for n, v in headers if n == b":method"), b"")
        if path != OBSERVE or method != b"POST":
            name = path.decode("latin-1")
            self.finish(sid, wire.UNIMPLEMENTED, f"tap: unknown method {name}")
            return
        self.calls[sid] = _Call(sid)

    def on_data(self, sid: int, data: bytes) -> None:
        call = self.calls.get(sid)
        if call is None or call.tap is not None:
            return  # a refused call, or more than the one request message: ignored
        try:
            messages = call.reader.feed(data)
        except wire.FrameError as exc:
            self.finish(sid, wire.INVALID_ARGUMENT, f"tap: {exc}")
            return
        if messages:
            self.observe(call, messages[0])

    def on_request_end(self, sid: int) -> None:
        call = self.calls.get(sid)
        if call is not None and call.tap is None:
            self.finish(sid, wire.INVALID_ARGUMENT, "tap: the request has no ObserveRequest")

    def observe(self, call: _Call, message: bytes) -> None:
        """Start the tap an ObserveRequest asks for."""
        server = self.server
        try:
            request = tap_pb2.ObserveRequest.FromString(message)
            if request.limit == 0:
                raise MatchError("limit must be at least 1")
            predicate = compile_match(request.match if request.HasField("match") else None)
        except (DecodeError, MatchError) as exc:
            self.finish(call.sid, wire.INVALID_ARGUMENT, f"tap: invalid ObserveRequest: {exc}")
            return
        extract = request.extract
        headers = extract.WhichOneof("extract") == "http" and (
            extract.http.WhichOneof("extract") == "headers"
        )
        base = server.next_base
        tap = TapStream(server.taps, base, predicate, request.limit, headers, self.schedule)
        if not server.taps.add(tap):
            limit = server.taps.max_streams
            self.finish(call.sid, wire.RESOURCE_EXHAUSTED, f"tap: {limit} taps already running")
            return
        server.next_base = base + 1
        call.tap = tap
        self.conn.send_headers(call.sid, _GRPC_HEAD)
        log.info("tap %d for %s: up to %d requests", base, self.peer, request.limit)

    def finish(self, sid: int, code: int, message: str = "") -> None:
        """End the call with a gRPC status: trailers after a response head, else trailers-only."""
        call = self.calls.pop(sid, None)
        fields = wire.status_fields(code, message)
        if call is None or call.tap is None:
            fields = _GRPC_HEAD + fields
        else:
            call.tap.close()
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.conn.send_headers(sid, fields, end_stream=True)

    def end_call(self, sid: int) -> None:
        """The client cancelled the call (or went away): the tap ends at once."""
        call = self.calls.pop(sid, None)
        if call is not None and call.tap is not None:
            log.info("tap %d for %s: cancelled", call.tap.base, self.peer)
            call.tap.close()

    # --- sending ------------------------------------------------------------------------------

    def schedule(self) -> None:
        """A tap has something new: send it, with what else comes within ``SEND_DELAY``."""
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(SEND_DELAY, self.send_pending)

    def send_pending(self) -> None:
        """Send queued events as far as flow control allows; end the calls that are done."""
        self.scheduled = False
        conn = self.conn
        for call in list(self.calls.values()):
            tap = call.tap
            if tap is None:
                continue
            while tap.queue and not self.paused:
                try:
                    window = conn.local_flow_control_window(call.sid)
                except h2.exceptions.StreamClosedError:
                    self.end_call(call.sid)
                    break
                window = min(window, conn.max_outbound_frame_size)
                if window <= 0:
                    break
                conn.send_data(call.sid, tap.take(window))
            if tap.done and not tap.queue:
                log.info("tap %d for %s: limit of %d reached", tap.base, self.peer, tap.limit)
                self.finish(call.sid, wire.OK)
        self.flush()

    def flush(self) -> None:
        """Write what the HTTP/2 connection has to send."""
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """GOAWAY and close."""
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection()
        self.flush()
        self.transport.close()
