"""The identity service on a real gRPC server over real TLS on 127.0.0.1, and workloads using it.

The service runs in-process as ``harness.identity_service.running`` starts it (its token review
is the local runtime's real HMAC code behind a test double of the platform).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from harness.identity_service import (
    DESTINATION_SVC,
    IDENTITY_SVC,
    NS,
    TIMEOUT,
    VOTING,
    WEB,
    Running,
    certify,
    eventually,
    request_for,
    running,
)
from weft.api import identity_pb2 as pb
from weft.identity import certs
from weft.identity.client import CertifyError, LocalIdentity, new_key_and_csr
from weft.identity.config import IdentityConfig
from weft.local import tokens


def test_names_are_linkerds() -> None:
    assert WEB == "web.emojivoto.serviceaccount.identity.weft.cluster.local"
    assert IDENTITY_SVC == "weft-identity.weft.serviceaccount.identity.weft.cluster.local"


async def refused(r: Running, request: pb.CertifyRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await certify(r, request)
    return info.value


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
