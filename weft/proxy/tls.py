"""mTLS on the data plane: the ``tls`` labels metrics carry, and dialling endpoints.

Outbound, a meshed endpoint (one discovery gave an identity) gets TLS 1.3 with SNI = its identity,
and its certificate must chain to the trust anchors and name that identity. Inbound, the listener
(``server.py``) terminates TLS only when the ClientHello's SNI is this proxy's own identity. Both
ends run over :mod:`weft.proxy.tls_transport`, which carries half-close.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from weft.proxy.discovery import Endpoint
from weft.proxy.metrics import LabelPairs
from weft.proxy.tls_transport import connect_tls

if TYPE_CHECKING:
    from weft.identity.client import LocalIdentity

TLS_DISABLED: LabelPairs = (("tls", "disabled"),)
TLS_HANDSHAKE_TIMEOUT = 10.0


def no_identity(reason: str) -> LabelPairs:
    """Labels of a plaintext connection while identity is on, with Linkerd's reason."""
    return (("tls", "no_identity"), ("no_tls_reason", reason))


def accepted_labels(client_id: str | None) -> LabelPairs:
    """Labels of an inbound connection whose TLS this proxy terminated."""
    return (("tls", "true"), ("client_id", client_id)) if client_id else (("tls", "true"),)


def peer_identity(ssl_object: ssl.SSLObject | None) -> str | None:
    """The DNS name in the verified peer certificate, if the peer presented one."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for entry in cert.get("subjectAltName", ()):
        if entry[0] == "DNS":
            return str(entry[1])
    return None


class Dialer:
    """Opens connections to endpoints for one direction, with mTLS where the endpoint has an
    identity and this proxy has a certificate; also says which ``tls`` labels they carry."""

    def __init__(self, identity: LocalIdentity | None, outbound: bool) -> None:
        self.identity = identity
        self.outbound = outbound
        self._labels: dict[str | None, LabelPairs] = {}

    def tls_labels(self, endpoint: Endpoint) -> LabelPairs:
        """``tls`` (with ``server_id`` or ``no_tls_reason``) labels of a connection to it."""
        labels = self._labels.get(endpoint.identity)
        if labels is None:
            if self.identity is None:
                labels = TLS_DISABLED
            elif not self.outbound:
                labels = no_identity("loopback")  # inbound dials the app on localhost
            elif endpoint.identity:
                labels = (("tls", "true"), ("server_id", endpoint.identity))
            else:
                labels = no_identity("not_provided_by_service_discovery")
            self._labels[endpoint.identity] = labels
        return labels

    def context_for(self, endpoint: Endpoint) -> ssl.SSLContext | None:
        """The client TLS context to reach ``endpoint`` with, or None for plaintext."""
        if not self.outbound or self.identity is None or not endpoint.identity:
            return None
        creds = self.identity.current
        if creds is None:
            return None  # not ready yet: readiness holds traffic back, so this is rare
        return creds.client

    async def connect(
        self, factory: Callable[[], asyncio.Protocol], endpoint: Endpoint, timeout: float
    ) -> None:
        """Connect ``factory()``'s protocol to ``endpoint`` (TLS included).

        ``timeout`` bounds the TCP connect alone (the TLS handshake has its own), and it fails
        only a connection that is not up when it expires: a busy loop that resumes this
        coroutine late does not throw an established connection away.
        """
        loop = asyncio.get_running_loop()
        host, port = endpoint.addr
        ctx = self.context_for(endpoint)
        sock = await _tcp_connect(loop, host, port, timeout)
        try:
            if ctx is None:
                await loop.create_connection(factory, sock=sock)
            else:
                assert endpoint.identity is not None  # context_for gives none without one
                async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
                    await connect_tls(factory, sock, ctx, endpoint.identity)
        except BaseException:
            sock.close()  # a no-op once the loop owns it: it detaches the socket when it fails
            raise


async def _tcp_connect(
    loop: asyncio.AbstractEventLoop, host: str, port: int, timeout: float
) -> socket.socket:
    """A connected non-blocking socket to ``host:port``; TimeoutError if it is not connected
    ``timeout`` seconds after the connect started."""
    try:  # endpoints are addresses: no resolver round trip for them
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        info = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, addr = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err == errno.EINPROGRESS:
            settled: asyncio.Future[None] = loop.create_future()

            def settle() -> None:
                if not settled.done():
                    settled.set_result(None)

            fd = sock.fileno()
            loop.add_writer(fd, settle)
            timer = loop.call_later(timeout, settle)
            try:
                await settled
            finally:
                timer.cancel()
                loop.remove_writer(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not err:
                try:
                    sock.getpeername()
                except OSError:
                    raise TimeoutError(f"connect to {host}:{port} timed out") from None
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return sock
