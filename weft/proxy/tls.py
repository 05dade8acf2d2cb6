"""mTLS on the data plane: the ``tls`` labels metrics carry, and dialling endpoints.

Outbound, a meshed endpoint (one discovery gave an identity) gets TLS 1.3 with SNI = its identity,
and its certificate must chain to the trust anchors and name that identity. Inbound, the listener
(``server.py``) terminates TLS only when the ClientHello's SNI is this proxy's own identity. Both
ends run over :mod:`weft.proxy.tls_transport`, which carries half-close.
"""

from __future__ import annotations

import asyncio
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
        """Connect ``factory()``'s protocol to ``endpoint`` (TLS included) within ``timeout``."""
        host, port = endpoint.addr
        ctx = self.context_for(endpoint)
        async with asyncio.timeout(timeout if ctx is None else timeout + TLS_HANDSHAKE_TIMEOUT):
            if ctx is None:
                await asyncio.get_running_loop().create_connection(factory, host, port)
            else:
                assert endpoint.identity is not None  # context_for gives none without one
                await connect_tls(factory, host, port, ctx, endpoint.identity)
