"""Listeners: accept a connection, find where it was going, detect its protocol, hand it over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from weft.proxy.config import DirectionConfig, ProxyConfig
from weft.proxy.context import INBOUND, Addr, ConnContext, ConnTracker, InFlight, original_dst
from weft.proxy.deadlines import Deadlines
from weft.proxy.detect import MAX_DETECT_BYTES, Protocol, detect
from weft.proxy.downgrade import AppConn
from weft.proxy.http1 import H1Pool, H1Upstream, serve_http1
from weft.proxy.http2 import H2Pool, serve_http2
from weft.proxy.metrics import LabelPairs, ProxyMetrics
from weft.proxy.routing import Router
from weft.proxy.tap.registry import Taps
from weft.proxy.tcp import serve_opaque
from weft.proxy.tls import (
    TLS_DISABLED,
    TLS_HANDSHAKE_TIMEOUT,
    Dialer,
    accepted_labels,
    no_identity,
    peer_identity,
)
from weft.proxy.tls_hello import MAX_HELLO_BYTES, ClientHello, Hello, parse_client_hello
from weft.proxy.tls_transport import accept_tls

if TYPE_CHECKING:
    from weft.identity.client import LocalIdentity

log = logging.getLogger("weft.proxy.server")

OPAQUE_PEEK_TIMEOUT = 0.3  # seconds an opaque-port client may stay silent before it is plain
PEEK_RETRY = 0.002  # seconds between peeks at a ClientHello that arrives in pieces


@dataclass
class Listener:
    """One of the proxy's two data-plane listeners (inbound or outbound).

    With identity on, the inbound listener accepts sockets itself and peeks at their first bytes
    (``MSG_PEEK``, nothing consumed): a ClientHello for this proxy's identity is TLS to
    terminate; anything else is handled as plaintext.
    """

    direction: str
    config: ProxyConfig
    dcfg: DirectionConfig
    metrics: ProxyMetrics
    router: Router
    tracker: ConnTracker
    identity: LocalIdentity | None = None
    taps: Taps = field(default_factory=Taps)
    h1_pool: H1Pool[H1Upstream] = field(default_factory=H1Pool)
    h2_pool: H2Pool = field(default_factory=H2Pool)
    downgrade_pool: H1Pool[AppConn] = field(default_factory=H1Pool)
    server: asyncio.Server | None = None
    sock: socket.socket | None = None
    dialer: Dialer = field(init=False)
    in_flight: InFlight = field(init=False)
    deadlines: Deadlines = field(default_factory=Deadlines)

    def __post_init__(self) -> None:
        self.dialer = Dialer(self.identity, outbound=self.direction != INBOUND)
        self.in_flight = InFlight(self.dcfg.max_in_flight)

    @property
    def terminates_tls(self) -> bool:
        """Whether this listener looks for TLS addressed to this proxy."""
        return self.direction == INBOUND and self.identity is not None

    async def start(self) -> Addr:
        """Bind and start accepting; returns the bound address."""
        loop = asyncio.get_running_loop()
        host, port = self.dcfg.listen
        if self.terminates_tls:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=1024)
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)
            self.sock = sock
            bound = sock.getsockname()
        else:
            self.server = await loop.create_server(
                lambda: _Accepting(self), host, port, reuse_address=True, backlog=1024
            )
            bound = self.server.sockets[0].getsockname()
        log.info("%s listener on %s:%s", self.direction, bound[0], bound[1])
        return bound[0], bound[1]

    def stop_accepting(self) -> None:
        """Close the listening socket; accepted connections carry on."""
        if self.server is not None:
            self.server.close()
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(64):  # a burst at a time, then let the loop breathe
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(False)
            _Peeker(self, conn)

    def plaintext_labels(self, peer: Addr) -> LabelPairs:
        """``tls`` labels of an accepted connection that is not TLS for this proxy."""
        if self.identity is None:
            return TLS_DISABLED
        if self.direction != INBOUND or _is_loopback(peer[0]):
            return no_identity("loopback")
        return no_identity("not_provided_by_remote")

    def context(self, transport: asyncio.Transport) -> ConnContext:
        """Build the context of a freshly accepted (and, for TLS, handshaken) connection."""
        sock = transport.get_extra_info("socket")
        local = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername") or ("", 0)
        orig = original_dst(sock, local)
        target: Addr | None
        if orig is None:
            target = self.dcfg.forward
        elif self.direction == INBOUND:
            target = ("127.0.0.1", orig[1])
        else:
            target = orig
        ssl_object = transport.get_extra_info("ssl_object")
        client_id = None
        if ssl_object is None:
            tls = self.plaintext_labels(peer)
        else:
            client_id = peer_identity(ssl_object)
            tls = accepted_labels(client_id)
        labels = (("direction", self.direction), ("peer", "src"), *tls)
        return ConnContext(
            direction=self.direction,
            config=self.config,
            dcfg=self.dcfg,
            metrics=self.metrics,
            router=self.router,
            tracker=self.tracker,
            h1_pool=self.h1_pool,
            h2_pool=self.h2_pool,
            downgrade_pool=self.downgrade_pool,
            peer=(peer[0], peer[1]),
            orig_dst=orig,
            target=target,
            tls=tls,
            stats=self.metrics.tcp.stats(labels).open(),
            dialer=self.dialer,
            taps=self.taps,
            in_flight=self.in_flight,
            deadlines=self.deadlines,
            client_id=client_id,
        )


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


class _Peeker:
    """Watches an accepted inbound socket until its first bytes show whether it is TLS for this
    proxy, then hands it to the event loop as a TLS or a plain connection."""

    def __init__(self, listener: Listener, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        orig = original_dst(sock, sock.getsockname())
        port = orig[1] if orig else 0
        # Server-speaks-first protocols live on opaque ports: don't hold their clients long.
        wait = listener.dcfg.detect_timeout
        if port in listener.dcfg.opaque_ports:
            wait = min(wait, OPAQUE_PEEK_TIMEOUT)
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(wait, self._silent)
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(MAX_HELLO_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop()
            return
        if not data:
            self._drop()  # closed before saying anything
            return
        hello = parse_client_hello(data)
        if hello is Hello.NEED_MORE:
            # Peeking doesn't consume, so the socket stays readable: look again shortly.
            self.loop.remove_reader(self.sock.fileno())
            self.loop.call_later(PEEK_RETRY, self._watch_again)
            return
        identity = self.listener.identity
        if (
            isinstance(hello, ClientHello)
            and identity is not None
            and identity.current is not None
            and hello.server_name == identity.name
        ):
            self._hand_over(identity.current.server)
        else:
            self._hand_over(None)

    def _watch_again(self) -> None:
        if self.timer is not None:
            self.loop.add_reader(self.sock.fileno(), self._readable)

    def _silent(self) -> None:
        self.timer = None
        self._hand_over(None, detect_left=0.0)

    def _drop(self) -> None:
        self._stop_watching()
        self.sock.close()

    def _stop_watching(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.loop.remove_reader(self.sock.fileno())

    def _hand_over(self, ctx: ssl.SSLContext | None, detect_left: float | None = None) -> None:
        self._stop_watching()
        if detect_left is None:
            detect_left = self.listener.dcfg.detect_timeout - (self.loop.time() - self.started)
        self.loop.create_task(self._adopt(ctx, max(0.0, detect_left)))

    async def _adopt(self, ctx: ssl.SSLContext | None, detect_left: float) -> None:
        listener = self.listener
        try:
            if ctx is None:
                await self.loop.connect_accepted_socket(
                    lambda: _Accepting(listener, detect_left), self.sock
                )
            else:
                async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
                    await accept_tls(lambda: _Accepting(listener, detect_left), self.sock, ctx)
        except (OSError, TimeoutError) as exc:
            if ctx is not None:
                listener.metrics.tcp_error(listener.direction, "tls_handshake")
                reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
                log.warning("refused TLS from %s: %s", _peer_text(self.sock), reason or exc)
            else:
                log.debug(
                    "connection from %s lost before it was served: %s", _peer_text(self.sock), exc
                )
            with contextlib.suppress(OSError):
                self.sock.close()


def _peer_text(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "a closed connection"
    return f"{host}:{port}"


class _Accepting(asyncio.Protocol):
    """Holds a new connection until its first bytes tell what protocol it speaks."""

    def __init__(self, listener: Listener, detect_timeout: float | None = None) -> None:
        self.listener = listener
        self.detect_timeout = (
            listener.dcfg.detect_timeout if detect_timeout is None else detect_timeout
        )
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None
        self.ctx: ConnContext
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.ctx = self.listener.context(self.transport)
        port = self.ctx.orig_dst[1] if self.ctx.orig_dst else (self.ctx.target or ("", 0))[1]
        if port in self.listener.dcfg.opaque_ports:
            self._hand_over(Protocol.OPAQUE)
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.detect_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        self.ctx.stats.read += len(data)
        self.buf += data
        found = detect(self.buf)
        if found is None and len(self.buf) < MAX_DETECT_BYTES:
            return
        self._hand_over(found or Protocol.OPAQUE)

    def eof_received(self) -> bool:
        if self.buf:
            self._hand_over(Protocol.OPAQUE, eof=True)
            return True
        return False  # closed before saying anything

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.ctx.stats.close()

    def _timed_out(self) -> None:
        log.debug("protocol detection timed out for %s:%s; treating as opaque", *self.ctx.peer)
        self._hand_over(Protocol.OPAQUE)

    def _hand_over(self, proto: Protocol, eof: bool = False) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._serve(proto, eof)

    def _serve(self, proto: Protocol, eof: bool) -> None:
        buf, self.buf = self.buf, b""
        if proto is Protocol.HTTP1:
            serve_http1(self.transport, self.ctx, buf)
        elif proto is Protocol.HTTP2:
            serve_http2(self.transport, self.ctx, buf)
        else:
            serve_opaque(self.transport, self.ctx, buf, eof)
