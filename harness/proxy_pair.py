"""Two weft listeners in the test's own event loop: a client's outbound proxy and a server's
inbound proxy on loopback, optionally with real mTLS between them.

The identities are real: a trust anchor and issuer are generated, each proxy's own key gets a
leaf certificate from that issuer (as the identity service would issue it), and the proxies
present them with the same TLS contexts ``weft proxy`` builds. The outbound proxy's router sends
everything to the inbound listener, telling it the identity to expect (as discovery would), and
the inbound proxy forwards to the app.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding

from harness.mesh import parse_samples, total
from weft.identity import certs, trust
from weft.identity.client import LocalIdentity
from weft.identity.config import IdentityConfig
from weft.identity.names import identity_name
from weft.proxy.balance import Load
from weft.proxy.config import ProxyConfig
from weft.proxy.context import INBOUND, OUTBOUND, ConnTracker
from weft.proxy.discovery import Addr, Endpoint
from weft.proxy.metrics import ProxyMetrics
from weft.proxy.profiles import Profile
from weft.proxy.routing import Fallbacks, Logical, OriginalDestination
from weft.proxy.server import Listener

CLIENT_ID = identity_name("client", "test", "weft", "cluster.local")
SERVER_ID = identity_name("server", "test", "weft", "cluster.local")


def issued_identity(material: trust.TrustMaterial, name: str) -> LocalIdentity:
    """A proxy identity holding a certificate from ``material``'s issuer (ready at once)."""
    cfg = IdentityConfig(
        local_name=name,
        trust_anchors_pem=material.anchors_pem(),
        token_file="/nonexistent/token",
        svc_addr=("127.0.0.1", 1),
        svc_name=identity_name("weft-identity", "weft", "weft", "cluster.local"),
    )
    key = certs.new_key()
    identity = LocalIdentity(cfg, key=(certs.key_to_pem(key), certs.make_csr(key, name)))
    now = datetime.now(UTC)
    csr = certs.check_csr(identity.csr, name)
    leaf = certs.issue_leaf(
        material.issuer, csr, name, lifetime=timedelta(hours=1), clock_skew=timedelta(0), now=now
    )
    der = [c.public_bytes(Encoding.DER) for c in (leaf, *material.issuer.chain)]
    identity.current = identity._credentials(der[0], der[1:])
    identity.ready.set()
    return identity


class _Peer(Logical):
    """Every request and connection goes to one endpoint (the inbound proxy)."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(Fallbacks(), f"{endpoint.addr[0]}:{endpoint.addr[1]}")
        self.load = Load(endpoint, 0.0)

    def pick(self, target: Addr | None, name: str | None = None) -> Load | None:
        return self.load


class _PeerRouter:
    """Routes everything to :class:`_Peer`."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.peer = _Peer(endpoint)

    def logical(self, name: str | None, target: Addr | None) -> Logical:
        return self.peer


class ProxyPair:
    """An outbound listener whose connections go to an inbound listener, which forwards to
    ``app``; with ``mtls`` the hop between them is TLS with verified identities both ways.

    With ``opaque`` the app's port, and the inbound listener's port as the outbound proxy sees
    it, skip protocol detection on both proxies. With ``h2`` the inbound endpoint carries
    discovery's ``h2`` protocol hint, so HTTP/1 requests cross as HTTP/2 (``l5d-orig-proto``).
    The outbound proxy's requests follow ``profile`` (routes, retries, timeouts) when given.
    """

    def __init__(
        self,
        app: Addr,
        *,
        mtls: bool,
        opaque: bool = False,
        h2: bool = False,
        profile: Profile | None = None,
    ) -> None:
        self.app = app
        self.mtls = mtls
        self.opaque = opaque
        self.h2 = h2
        self.profile = profile
        self.metrics = ProxyMetrics(600.0)
        self.tracker = ConnTracker()
        self.listeners: list[Listener] = []
        self.outbound: Addr = ("", 0)
        self.inbound: Addr = ("", 0)

    async def start(self) -> ProxyPair:
        """Start the inbound listener, then the outbound one pointed at it."""
        client_identity = server_identity = None
        if self.mtls:
            material = trust.generate_trust(
                "weft", "cluster.local", now=datetime.now(UTC) - timedelta(minutes=1)
            )
            client_identity = issued_identity(material, CLIENT_ID)
            server_identity = issued_identity(material, SERVER_ID)
        env = {"LINKERD2_PROXY_IDENTITY_DISABLED": "1"}  # identities are handed in directly
        env["LINKERD2_PROXY_INBOUND_LISTEN_ADDR"] = "127.0.0.1:0"
        env["LINKERD2_PROXY_INBOUND_FORWARD"] = f"{self.app[0]}:{self.app[1]}"
        if self.opaque:
            env["LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"] = str(self.app[1])
        config = ProxyConfig.from_env(env)
        inbound = Listener(
            INBOUND,
            config,
            config.inbound,
            self.metrics,
            OriginalDestination(),
            self.tracker,
            server_identity,
        )
        self.listeners.append(inbound)
        self.inbound = await inbound.start()
        env["LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR"] = "127.0.0.1:0"
        env["LINKERD2_PROXY_OUTBOUND_FORWARD"] = f"{self.inbound[0]}:{self.inbound[1]}"
        if self.opaque:
            env["LINKERD2_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"] = str(self.inbound[1])
        config = ProxyConfig.from_env(env)
        endpoint = Endpoint(self.inbound, (), SERVER_ID if self.mtls else None, self.h2)
        router = _PeerRouter(endpoint)
        if self.profile is not None:
            router.peer.set_profile(self.profile)
        outbound = Listener(
            OUTBOUND, config, config.outbound, self.metrics, router, self.tracker, client_identity
        )
        self.listeners.append(outbound)
        self.outbound = await outbound.start()
        return self

    def open_connections(self, direction: str, peer: str) -> float:
        """``tcp_open_connections`` of one direction and peer (``src`` or ``dst``), as scraped."""
        samples = parse_samples(self.metrics.render().decode())
        return total(samples, "tcp_open_connections", direction=direction, peer=peer)

    async def close(self) -> None:
        """Stop accepting and abort what is still open."""
        for listener in self.listeners:
            listener.stop_accepting()
            listener.h2_pool.close()
        await self.tracker.drain(0.0)
        await asyncio.sleep(0)
