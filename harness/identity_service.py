"""The identity service in-process on loopback, and certificates from it for any identity.

``serve_identity`` runs as it does in the control plane: its own serving certificate from the
authority, the Certify service and the admin server with ``/metrics``. Token review goes
through :class:`TokenPlatform`, a test double for :class:`weft.platform.Platform` whose
``verify_token`` is the local runtime's real HMAC code (``weft.local.tokens.verify``); the double
only stands in for the node agent's HTTP API (and its check that the pod still exists), which
the local-runtime e2e tests exercise. Used by the identity, tap and footprint tests and by
``bench/tap_load.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from harness.loopback import reserved_port
from weft.api import identity_pb2 as pb
from weft.api import identity_pb2_grpc
from weft.controller.identity.authority import Authority, AuthorityConfig
from weft.controller.identity.server import serve_identity
from weft.identity import certs
from weft.identity.names import identity_name
from weft.local import tokens
from weft.platform import TokenReview, WatchEvent

TIMEOUT = 10.0
NS = "emojivoto"
WEB = identity_name("web", NS, "weft", "cluster.local")
VOTING = identity_name("voting", NS, "weft", "cluster.local")
IDENTITY_SVC = identity_name("weft-identity", "weft", "weft", "cluster.local")
DESTINATION_SVC = identity_name("weft-destination", "weft", "weft", "cluster.local")
TAP = identity_name("weft-tap", "weft", "weft", "cluster.local")


class TokenPlatform:
    """A :class:`weft.platform.Platform` that only reviews tokens, with the local runtime's HMAC."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.reviews = 0

    async def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError("the identity service lists nothing")

    def watch(self, kind: str, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        raise NotImplementedError("the identity service watches nothing")

    async def mint_token(self, namespace: str, service_account: str, pod: str) -> str:
        return tokens.mint(self.key, claims(namespace, service_account, pod))

    async def verify_token(self, token: str) -> TokenReview:
        self.reviews += 1
        found = tokens.verify(self.key, token)
        if found is None:
            return TokenReview(False, reason="invalid token")
        if isinstance(found, tokens.UserClaims):
            return TokenReview(True, user=found.user)
        return TokenReview(
            True,
            namespace=found.namespace,
            service_account=found.service_account,
            pod=found.pod,
        )


def claims(namespace: str, service_account: str, pod: str) -> tokens.Claims:
    return tokens.Claims(namespace, service_account, pod, f"uid-{pod}")


# -- running the service ------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT
) -> None:
    """Wait until ``await check()`` is true, failing after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def get_metrics(admin: int) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        session.get(f"http://127.0.0.1:{admin}/metrics") as rsp,
    ):
        assert rsp.status == 200
        return await rsp.text()


def certify_counts(text: str) -> dict[str, float]:
    """``identity_certify_requests_total`` by code, from Prometheus text."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "identity_certify_requests_total":
                counts[sample.labels["code"]] = sample.value
    return counts


@dataclass
class Running:
    port: int
    admin: int
    anchors: list[x509.Certificate]
    anchors_pem: bytes
    platform: TokenPlatform
    tmp_path: Path

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def token(self, namespace: str, service_account: str, key: bytes | None = None) -> bytes:
        minted = tokens.mint(key or self.platform.key, claims(namespace, service_account, "p-1"))
        return minted.encode()

    async def counts(self) -> dict[str, float]:
        return certify_counts(await get_metrics(self.admin))


async def _serving(task: asyncio.Task[None], admin: int) -> bool:
    """Whether the service answers on its admin port (it starts gRPC first)."""
    if task.done():
        return True
    try:
        text = await get_metrics(admin)
    except (aiohttp.ClientError, OSError, AssertionError):
        return False
    return "identity_cert_expiration_timestamp_seconds" in text


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """``serve_identity`` on fresh ports with generated trust, until the block ends."""
    authority = Authority.in_directory(tmp_path / "trust", AuthorityConfig(), datetime.now(UTC))
    platform = TokenPlatform(tokens.load_or_create_key(tmp_path / "token.key"))
    # gRPC binds the reserved port too (SO_REUSEPORT, its default); the admin socket is bound
    # here and handed over.
    admin_sock = socket.create_server(("127.0.0.1", 0))
    admin = int(admin_sock.getsockname()[1])
    stop = asyncio.Event()
    with reserved_port() as port:
        task = asyncio.create_task(
            serve_identity(
                authority,
                platform,
                ("127.0.0.1", port),
                admin_sock,
                "weft-identity",
                stop,
            )
        )
        await eventually(lambda: _serving(task, admin), "the identity service to start")
    if task.done():
        await task  # it failed to start: say why
    try:
        yield Running(
            port,
            admin,
            authority.material.anchors,
            authority.material.anchors_pem(),
            platform,
            tmp_path,
        )
    finally:
        stop.set()
        async with asyncio.timeout(TIMEOUT):
            await task


async def certify(
    r: Running, request: pb.CertifyRequest, server_name: str = IDENTITY_SVC
) -> pb.CertifyResponse:
    """One Certify call over TLS trusting only the anchors, expecting ``server_name``."""
    creds = grpc.ssl_channel_credentials(root_certificates=r.anchors_pem)
    options = [("grpc.ssl_target_name_override", server_name)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{r.port}", creds, options=options) as channel:
        stub = identity_pb2_grpc.IdentityStub(channel)  # type: ignore[no-untyped-call]
        response = await stub.Certify(request, timeout=TIMEOUT)
    assert isinstance(response, pb.CertifyResponse)
    return response


def request_for(
    identity: str, token: bytes, csr_name: str | None = None, csr: bytes | None = None
) -> pb.CertifyRequest:
    if csr is None:
        csr = certs.make_csr(certs.new_key(), csr_name or identity)
    return pb.CertifyRequest(identity=identity, token=token, certificate_signing_request=csr)


async def client_certificate(r: Running, identity: str) -> tuple[bytes, bytes]:
    """A key and a certificate chain (PEM) for ``identity``, from the identity service."""
    namespace, service_account = identity.split(".")[1], identity.split(".")[0]
    key = certs.new_key()
    token = r.token(namespace, service_account)
    response = await certify(r, request_for(identity, token, csr=certs.make_csr(key, identity)))
    chain = [x509.load_der_x509_certificate(response.leaf_certificate)] + [
        x509.load_der_x509_certificate(c) for c in response.intermediate_certificates
    ]
    return certs.key_to_pem(key), certs.certs_to_pem(chain)
