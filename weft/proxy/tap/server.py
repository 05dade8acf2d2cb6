"""The control server: ``io.linkerd.proxy.tap.Tap/Observe`` on the proxy's control port.

Security: TLS 1.3 only, with this proxy's newest certificate, and a client certificate chained to
the trust anchors is required (a handshake without one fails). A client whose identity (its
certificate's DNS name) is not ``LINKERD2_PROXY_TAP_SVC_NAME`` gets PERMISSION_DENIED for any
call, and nothing else. Unknown methods get UNIMPLEMENTED.

HTTP/2 and gRPC's framing come from the ``h2`` library, imported on the first connection: it is
not on the data path, and a proxy nobody taps never loads it. An Observe call's events wait in
its :class:`TapStream` queue until the client's flow-control window lets them go; the stream
ends with status OK once its limit is reached and those requests' events are sent, and at once
(the tap removed) when the client cancels or disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, cast

from google.protobuf.message import DecodeError

from weft.api import tap_pb2
from weft.identity.client import Credentials, mtls_server_context
from weft.proxy.tap import wire
from weft.proxy.tap.match import MatchError, compile_match
from weft.proxy.tap.registry import Addr, Taps
from weft.proxy.tap.stream import TapStream
from weft.proxy.tls import TLS_HANDSHAKE_TIMEOUT, peer_identity

if TYPE_CHECKING:
    from weft.identity.client import LocalIdentity

log = logging.getLogger("weft.proxy.tap")

OBSERVE = b"/io.linkerd.proxy.tap.Tap/Observe"
MAX_REQUEST_BYTES = 64 * 1024
# Events wait this long (seconds) for others to share their HTTP/2 frame, TLS record and write.
SEND_DELAY = 0.01
_GRPC_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]

_h2: Any = None  # the h2 modules, once a connection needed them


def _load_h2() -> Any:
    global _h2
    if _h2 is None:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions

        _h2 = h2
    return _h2


class ControlServer:
    """Accepts tap clients on ``listen`` for the proxy whose identity is ``identity``."""

    def __init__(self, taps: Taps, identity: LocalIdentity, listen: Addr, svc_name: str) -> None:
        self.taps = taps
        self.identity = identity
        self.listen = listen
        self.svc_name = svc_name
        self.sock: socket.socket | None = None
        self.conns: set[_ControlConn] = set()
        self.handshakes: set[asyncio.Task[None]] = set()
        self.next_base = 0
        self._context: tuple[Credentials, ssl.SSLContext] | None = None

    async def start(self) -> Addr:
        """Bind and start accepting; returns the bound address."""
        host, port = self.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128)
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)
        self.sock = sock
        bound = sock.getsockname()
        log.info("tap server on %s:%s, for %s", bound[0], bound[1], self.svc_name or "nobody")
        return bound[0], bound[1]

    def close(self) -> None:
        """Stop accepting and close every connection (their taps end)."""
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for task in list(self.handshakes):
            task.cancel()
        for conn in list(self.conns):
            conn.close()

    def context(self) -> ssl.SSLContext | None:
        """The TLS context for a new connection: the newest certificate (None before the first)."""
        creds = self.identity.current
        if creds is None:
            return None
        cached = self._context
        if cached is None or cached[0] is not creds:
            ctx = mtls_server_context(
                creds.chain_pem, self.identity.key_pem, self.identity.cfg.trust_anchors_pem
            )
            ctx.set_alpn_protocols(["h2"])  # gRPC clients insist on negotiating it
            cached = self._context = (creds, ctx)
        return cached[1]

    def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(16):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("tap server: accept failed: %s", exc)
                return
            ctx = self.context()
            if ctx is None:
                conn.close()  # no certificate yet: nothing to prove who we are with
                continue
            conn.setblocking(False)
            task = loop.create_task(self._adopt(conn, ctx))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _adopt(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        peer = _peer_text(sock)
        try:
            await loop.connect_accepted_socket(
                lambda: _ControlConn(self),
                sock,
                ssl=ctx,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
            log.info("tap server: refused TLS from %s: %s", peer, reason or exc)
            with contextlib.suppress(OSError):
                sock.close()
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                sock.close()
            raise

    def denial(self, client_id: str | None) -> str | None:
        """Why a client with this identity may not tap (None: it may)."""
        if self.svc_name and client_id == self.svc_name:
            return None
        who = client_id or "(none)"
        if not self.svc_name:
            return f"tap: client identity {who} is not allowed (LINKERD2_PROXY_TAP_SVC_NAME unset)"
        return f"tap: client identity {who} is not {self.svc_name}"


def _peer_text(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "a closed connection"
    return f"{host}:{port}"


class _Call:
    """One request stream on a control connection."""

    __slots__ = ("reader", "sid", "tap")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.reader = wire.MessageReader(MAX_REQUEST_BYTES)
        self.tap: TapStream | None = None


class _ControlConn(asyncio.Protocol):
    """An HTTP/2 connection from a tap client (after its TLS handshake)."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.h2 = _load_h2()
        config = self.h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = self.h2.connection.H2Connection(config=config)
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
        h2 = self.h2
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
        with contextlib.suppress(self.h2.exceptions.StreamClosedError):
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
                except self.h2.exceptions.StreamClosedError:
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
        with contextlib.suppress(self.h2.exceptions.ProtocolError):
            self.conn.close_connection()
        self.flush()
        self.transport.close()
