"""The control server: ``io.linkerd.proxy.tap.Tap/Observe`` on the proxy's control port.

Security: TLS 1.3 only, with this proxy's newest certificate, and a client certificate chained to
the trust anchors is required (a handshake without one fails). A client whose identity (its
certificate's DNS name) is not ``LINKERD2_PROXY_TAP_SVC_NAME`` gets PERMISSION_DENIED for any
call, and nothing else. Unknown methods get UNIMPLEMENTED.

What happens on a connection (HTTP/2 from the ``h2`` library, ``ObserveRequest`` and events in
protobuf) is in :mod:`weft.proxy.tap.connection`, imported on the first connection: it is not on
the data path, and a proxy nobody taps loads neither library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import TYPE_CHECKING

from weft.identity.client import Credentials, mtls_server_context
from weft.proxy.tap.registry import Addr, Taps
from weft.proxy.tls import TLS_HANDSHAKE_TIMEOUT

if TYPE_CHECKING:
    from weft.identity.client import LocalIdentity
    from weft.proxy.tap.connection import ControlConnection

log = logging.getLogger("weft.proxy.tap")


class ControlServer:
    """Accepts tap clients on ``listen`` for the proxy whose identity is ``identity``."""

    def __init__(self, taps: Taps, identity: LocalIdentity, listen: Addr, svc_name: str) -> None:
        self.taps = taps
        self.identity = identity
        self.listen = listen
        self.svc_name = svc_name
        self.sock: socket.socket | None = None
        self.conns: set[ControlConnection] = set()
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
        from weft.proxy.tap.connection import ControlConnection  # h2, protobuf: first tap

        loop = asyncio.get_running_loop()
        peer = _peer_text(sock)
        try:
            await loop.connect_accepted_socket(
                lambda: ControlConnection(self),
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
