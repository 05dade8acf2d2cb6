"""The identity service on a real gRPC server over real TLS on 127.0.0.1, and workloads using it.

``serve_identity`` runs as it does in the control plane: its own serving certificate from the
authority, the Certify service and the admin server with ``/metrics``. Token review goes
through :class:`TokenPlatform`, a test double for :class:`weft.platform.Platform` whose
``verify_token`` is the local runtime's real HMAC code (``weft.local.tokens.verify``); the double
only stands in for the node agent's HTTP API (and its check that the pod still exists), which
the local-runtime e2e tests exercise.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store
from prometheus_client.parser import text_string_to_metric_families

from tests.loopback import reserved_port
from weft.api import identity_pb2 as pb
from weft.api import identity_pb2_grpc
from weft.controller.identity.authority import Authority, AuthorityConfig
from weft.controller.identity.server import serve_identity
from weft.identity import certs
from weft.identity.client import CertifyError, LocalIdentity, new_key_and_csr
from weft.identity.config import IdentityConfig
from weft.identity.names import identity_name
from weft.local import tokens
from weft.platform import TokenReview, WatchEvent

TIMEOUT = 10.0
NS = "emojivoto"
WEB = identity_name("web", NS, "weft", "cluster.local")
VOTING = identity_name("voting", NS, "weft", "cluster.local")
IDENTITY_SVC = identity_name("weft-identity", "weft", "weft", "cluster.local")
DESTINATION_SVC = identity_name("weft-destination", "weft", "weft", "cluster.local")


def test_names_are_linkerds() -> None:
    assert WEB == "web.emojivoto.serviceaccount.identity.weft.cluster.local"
    assert IDENTITY_SVC == "weft-identity.weft.serviceaccount.identity.weft.cluster.local"


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


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``await check()`` is true, failing after :data:`TIMEOUT`."""
    try:
        async with asyncio.timeout(TIMEOUT):
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


async def refused(r: Running, request: pb.CertifyRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await certify(r, request)
    return info.value


def request_for(
    identity: str, token: bytes, csr_name: str | None = None, csr: bytes | None = None
) -> pb.CertifyRequest:
    if csr is None:
        csr = certs.make_csr(certs.new_key(), csr_name or identity)
    return pb.CertifyRequest(identity=identity, token=token, certificate_signing_request=csr)


# -- Certify ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_certify_issues_a_leaf_that_chains_to_the_anchors(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        key = certs.new_key()
        request = request_for(WEB, r.token(NS, "web"), csr=certs.make_csr(key, WEB))
        before = datetime.now(UTC)
        response = await certify(r, request)
        after = datetime.now(UTC)

        leaf = x509.load_der_x509_certificate(response.leaf_certificate)
        intermediates = [
            x509.load_der_x509_certificate(c) for c in response.intermediate_certificates
        ]
        assert [certs.common_name(c) for c in intermediates] == ["identity.weft.cluster.local"]
        assert leaf.public_key() == key.public_key()

        # cryptography's own WebPKI-style verifier, as a client certificate and as a server's.
        builder = PolicyBuilder().store(Store(r.anchors)).time(after)
        verified = builder.build_client_verifier().verify(leaf, intermediates)
        assert verified.chain[-1] == r.anchors[0]
        assert verified.subjects == [x509.DNSName(WEB)]
        builder.build_server_verifier(x509.DNSName(WEB)).verify(leaf, intermediates)
        certs.verify_leaf(leaf, intermediates, r.anchors, identity=WEB, now=after)

        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [WEB]
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku
        assert ExtendedKeyUsageOID.CLIENT_AUTH in eku

        start, end = certs.not_before(leaf), certs.not_after(leaf)
        assert response.valid_until.ToDatetime(tzinfo=UTC) == end
        # Backdated by the 20 s clock skew; certificate times have whole seconds.
        skew = timedelta(seconds=20)
        assert before - skew - timedelta(seconds=1) <= start <= after - skew
        assert end - (start + skew) == timedelta(hours=24)
        assert r.platform.reviews == 1
        assert await r.counts() == {"OK": 1}


@pytest.mark.anyio
async def test_client_checks_the_identity_services_own_name(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        request = request_for(WEB, r.token(NS, "web"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await certify(r, request, server_name=DESTINATION_SVC)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # grpcio's wording (pinned in pyproject.toml) for a certificate naming someone else.
        assert "Hostname Verification Check failed" in (info.value.details() or "")
        # The handshake failed: the request never reached the service.
        assert r.platform.reviews == 0
        assert await r.counts() == {}

        # The same request to the name on the service's certificate goes through.
        response = await certify(r, request, server_name=IDENTITY_SVC)
        leaf = x509.load_der_x509_certificate(response.leaf_certificate)
        assert certs.dns_names(leaf) == [WEB]
        assert await r.counts() == {"OK": 1}


@pytest.mark.anyio
async def test_refusals_have_codes_reasons_logs_and_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="weft.controller.identity")
    async with running(tmp_path) as r:
        web_token = r.token(NS, "web")
        denied = [
            # Not a token at all.
            (request_for(WEB, b"garbage"), ["token not authenticated", "invalid token"]),
            # Well-formed, but signed with another key.
            (
                request_for(WEB, r.token(NS, "web", key=b"k" * tokens.KEY_BYTES)),
                ["token not authenticated", "invalid token"],
            ),
            # A web token asking for voting's identity.
            (request_for(VOTING, web_token), [f'"{WEB}"', f'"{VOTING}"']),
            # The CSR names another identity than the one requested.
            (request_for(WEB, web_token, csr_name=VOTING), [f'"{VOTING}"', f'"{WEB}"']),
            # A user's token (the cluster admin's) proves no workload identity.
            (
                request_for(WEB, tokens.mint(r.platform.key, tokens.UserClaims("admin")).encode()),
                ['"weft:admin"', f'"{WEB}"'],
            ),
        ]
        for request, reasons in denied:
            error = await refused(r, request)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
            for reason in reasons:
                assert reason in error.details()

        invalid = [
            (request_for(WEB, b""), "identity, token and CSR must all be given"),
            (request_for(WEB, web_token, csr=b""), "identity, token and CSR must all be given"),
            (request_for("", web_token, csr_name=WEB), "identity, token and CSR must all be given"),
            (request_for(WEB, web_token, csr=b"\x30\x03not a csr"), "CSR is not valid DER"),
        ]
        for request, reason in invalid:
            error = await refused(r, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert reason in error.details()

        ok = await certify(r, request_for(WEB, web_token))
        assert certs.dns_names(x509.load_der_x509_certificate(ok.leaf_certificate)) == [WEB]

        assert await r.counts() == {
            "PERMISSION_DENIED": len(denied),
            "INVALID_ARGUMENT": len(invalid),
            "OK": 1,
        }

    refusals = [
        rec.getMessage()
        for rec in caplog.records
        if rec.name == "weft.controller.identity" and "refused certificate" in rec.getMessage()
    ]
    assert len(refusals) == len(denied) + len(invalid)
    assert any(f"for '{VOTING}'" in line and f'token is for "{WEB}"' in line for line in refusals)


# -- LocalIdentity ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_key_and_csr_come_from_a_child_process_through_a_pipe() -> None:
    key_pem, csr_der = await new_key_and_csr(WEB)
    csr = certs.check_csr(csr_der, WEB)  # the identity service's own checks
    assert csr.public_key() == certs.load_key_pem(key_pem, "key").public_key()
    other_pem, _ = await new_key_and_csr(WEB)
    assert other_pem != key_pem
    with pytest.raises(CertifyError, match="making a key failed: usage"):
        await new_key_and_csr("")


def local_identity(r: Running, service_account: str, **tuning: float) -> LocalIdentity:
    token_file = r.tmp_path / f"token-{service_account}"
    token_file.write_bytes(r.token(NS, service_account))
    cfg = IdentityConfig(
        local_name=WEB,
        trust_anchors_pem=r.anchors_pem,
        token_file=str(token_file),
        svc_addr=r.addr,
        svc_name=IDENTITY_SVC,
        **tuning,
    )
    return LocalIdentity(cfg)


@asynccontextmanager
async def started(identity: LocalIdentity) -> AsyncIterator[LocalIdentity]:
    identity.start()
    try:
        yield identity
    finally:
        identity.stop()
        task = identity._task
        assert task is not None
        await asyncio.wait([task], timeout=TIMEOUT)
        assert task.done()


def peer_names(ssl_object: ssl.SSLObject) -> list[str]:
    peer = ssl_object.getpeercert()
    assert peer, "no verified peer certificate"
    entries: Any = peer.get("subjectAltName", ())
    return [str(value) for kind, value in entries if kind == "DNS"]


@pytest.mark.anyio
async def test_local_identity_gets_a_certificate_for_mutual_tls(tmp_path: Path) -> None:
    async with running(tmp_path) as r, started(local_identity(r, "web")) as identity:
        async with asyncio.timeout(TIMEOUT):
            await identity.ready.wait()
        creds = identity.current
        assert creds is not None
        leaf = x509.load_der_x509_certificate(creds.leaf_der)
        assert certs.dns_names(leaf) == [WEB]
        # The key the child process made, and that the proxy presents, is the leaf's.
        assert leaf.public_key() == certs.load_key_pem(identity.key_pem, "key").public_key()
        assert creds.expiry == certs.not_after(leaf)
        assert certs.load_certs_pem(creds.chain_pem, "chain")[0] == leaf

        seen: asyncio.Future[tuple[list[str], str | None]] = (
            asyncio.get_running_loop().create_future()
        )

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tls = writer.get_extra_info("ssl_object")
            if not seen.done():
                seen.set_result((peer_names(tls), tls.version()))
            line = await reader.readline()
            writer.write(b"you said " + line)
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=creds.server)
        try:
            port = server.sockets[0].getsockname()[1]
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=creds.client, server_hostname=WEB
                )
                try:
                    writer.write(b"hello\n")
                    await writer.drain()
                    assert await reader.readline() == b"you said hello\n"
                    tls = writer.get_extra_info("ssl_object")
                    assert peer_names(tls) == [WEB]
                    assert tls.version() == "TLSv1.3"
                finally:
                    writer.close()
                    await writer.wait_closed()
                assert await seen == ([WEB], "TLSv1.3")
        finally:
            server.close()
            await server.wait_closed()
        assert await r.counts() == {"OK": 1}


@pytest.mark.anyio
async def test_local_identity_with_another_accounts_token_keeps_retrying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="weft.identity.client")

    def failures() -> list[str]:
        return [
            rec.getMessage()
            for rec in caplog.records
            if rec.name == "weft.identity.client" and "certify failed" in rec.getMessage()
        ]

    async def retried() -> bool:
        return len(failures()) >= 2

    async with running(tmp_path) as r:
        identity = local_identity(r, "voting", backoff_min=0.05, backoff_max=0.2)
        async with started(identity):
            await eventually(retried, "two failed certify attempts")
            assert identity.current is None
            assert not identity.ready.is_set()
        for line in failures():
            assert "PERMISSION_DENIED" in line
            assert f'token is for "{VOTING}", not "{WEB}"' in line
        counts = await r.counts()
        assert set(counts) == {"PERMISSION_DENIED"}
        assert counts["PERMISSION_DENIED"] >= 2
