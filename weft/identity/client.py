"""A workload's own identity (a proxy's, or a control-plane component's): a key that never
leaves the process, a certificate from the identity service, TLS contexts built from both, and
renewal before expiry."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509

from weft.api import identity_pb2
from weft.identity import certs
from weft.identity.config import IdentityConfig

log = logging.getLogger("weft.identity.client")

CERTIFY = "/io.linkerd.proxy.identity.Identity/Certify"
TRUST_ANCHORS_VAR = "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS"


@dataclass(frozen=True)
class Credentials:
    """One issued certificate and the TLS contexts that present it."""

    leaf: x509.Certificate
    chain_pem: bytes
    server: ssl.SSLContext
    client: ssl.SSLContext
    expiry: datetime


class CertifyError(RuntimeError):
    """The identity service did not give a usable certificate."""


def refresh_delay(now: datetime, expiry: datetime, cfg: IdentityConfig) -> float:
    """Seconds until renewal: 70 % of the remaining lifetime, within the configured bounds."""
    left = (expiry - now).total_seconds()
    return min(max(0.7 * left, cfg.min_refresh), cfg.max_refresh)


def _present(
    contexts: tuple[ssl.SSLContext, ...], chain_pem: bytes, key_pem: bytes, anchors_pem: bytes
) -> None:
    """Make ``contexts`` TLS 1.3 only, presenting ``chain_pem`` and trusting the anchors.

    ``ssl`` loads keys only from files, so the key goes through an anonymous in-memory file
    (``memfd``) that is closed as soon as it is read: it never touches a filesystem.
    """
    fd = os.memfd_create("weft-identity", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain_pem + key_pem)
        path = f"/proc/self/fd/{fd}"
        for ctx in contexts:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(path)
            ctx.load_verify_locations(cadata=anchors_pem.decode())
            ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    finally:
        os.close(fd)


def tls_contexts(
    chain_pem: bytes, key_pem: bytes, anchors_pem: bytes
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server and client TLS 1.3 contexts presenting ``chain_pem`` and trusting the anchors."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_OPTIONAL  # unmeshed TLS clients have no certificate
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    _present((server, client), chain_pem, key_pem, anchors_pem)
    return server, client


def mtls_server_context(chain_pem: bytes, key_pem: bytes, anchors_pem: bytes) -> ssl.SSLContext:
    """A TLS 1.3 server context presenting ``chain_pem`` that requires a client certificate
    chained to the anchors (handshakes without one fail)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_REQUIRED
    _present((server,), chain_pem, key_pem, anchors_pem)
    return server


class LocalIdentity:
    """Obtains and renews this proxy's certificate; ``ready`` is set once it has one."""

    def __init__(
        self, cfg: IdentityConfig, on_update: Callable[[Credentials], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.on_update = on_update
        self.anchors = certs.load_certs_pem(cfg.trust_anchors_pem, TRUST_ANCHORS_VAR)
        self.key = certs.new_key()
        self.csr = certs.make_csr(self.key, cfg.local_name)
        self.key_pem = certs.key_to_pem(self.key)
        self.ready = asyncio.Event()
        self.current: Credentials | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """This proxy's identity name."""
        return self.cfg.local_name

    def start(self) -> None:
        """Start certifying in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop renewing."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        backoff = self.cfg.backoff_min
        while True:
            try:
                creds = await self.certify()
            except (CertifyError, OSError) as exc:
                delay = backoff * random.uniform(0.9, 1.1)
                backoff = min(backoff * 2, self.cfg.backoff_max)
                log.warning("certify failed (retrying in %.1fs): %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            backoff = self.cfg.backoff_min
            first = self.current is None
            self.current = creds
            self.ready.set()
            if self.on_update is not None:
                self.on_update(creds)
            delay = refresh_delay(datetime.now(UTC), creds.expiry, self.cfg)
            log.info(
                "%s certificate for %s, valid until %s; renewing in %.0fs",
                "got" if first else "renewed",
                self.name,
                creds.expiry.isoformat(timespec="seconds"),
                delay,
            )
            await asyncio.sleep(delay)

    async def certify(self) -> Credentials:
        """One ``Identity/Certify`` round trip, checked against the trust anchors."""
        cfg = self.cfg
        try:
            token = Path(cfg.token_file).read_bytes()
        except OSError as exc:
            raise CertifyError(f"cannot read token file {cfg.token_file}: {exc.strerror}") from exc
        request = identity_pb2.CertifyRequest(
            identity=cfg.local_name, token=token, certificate_signing_request=self.csr
        )
        creds = grpc.ssl_channel_credentials(root_certificates=cfg.trust_anchors_pem)
        target = f"{cfg.svc_addr[0]}:{cfg.svc_addr[1]}"
        options = [("grpc.ssl_target_name_override", cfg.svc_name)]
        started = time.monotonic()
        async with grpc.aio.secure_channel(target, creds, options=options) as channel:
            call = channel.unary_unary(
                CERTIFY,
                request_serializer=identity_pb2.CertifyRequest.SerializeToString,
                response_deserializer=identity_pb2.CertifyResponse.FromString,
            )
            try:
                response = await call(request, timeout=cfg.certify_timeout)
            except grpc.aio.AioRpcError as exc:
                raise CertifyError(f"{exc.code().name}: {exc.details()}") from exc
        log.debug("certify took %.0f ms", (time.monotonic() - started) * 1000)
        return self._credentials(response)

    def _credentials(self, response: identity_pb2.CertifyResponse) -> Credentials:
        try:
            leaf = x509.load_der_x509_certificate(response.leaf_certificate)
            chain = [x509.load_der_x509_certificate(c) for c in response.intermediate_certificates]
        except ValueError as exc:
            raise CertifyError(f"identity service sent an unreadable certificate: {exc}") from exc
        try:
            certs.verify_leaf(leaf, chain, self.anchors, identity=self.name, now=datetime.now(UTC))
        except certs.CertError as exc:
            raise CertifyError(
                f"identity service sent a certificate we cannot trust: {exc}"
            ) from exc
        if leaf.public_key() != self.key.public_key():
            raise CertifyError("identity service sent a certificate for another key")
        chain_pem = certs.certs_to_pem([leaf, *chain])
        server, client = tls_contexts(chain_pem, self.key_pem, self.cfg.trust_anchors_pem)
        return Credentials(leaf, chain_pem, server, client, certs.not_after(leaf))
