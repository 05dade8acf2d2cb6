"""A workload's own identity (a proxy's, or a control-plane component's): a key that never
leaves the process, a certificate from the identity service, TLS contexts built from both, and
renewal before expiry.

Neither grpcio, cryptography nor protobuf is loaded here (a proxy carries this module for its
whole life): the key and the CSR come from a short-lived child process
(:mod:`weft.identity.keygen`), ``Certify`` goes over :mod:`weft.grpc_client` with the messages of
:mod:`weft.proxy_api.identity`, and a new certificate is checked by OpenSSL, the
way peers will check it: an in-memory mutual TLS handshake of the new contexts with each other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from weft.grpc_client.calls import RpcError
from weft.grpc_client.channel import Channel
from weft.identity.config import IdentityConfig
from weft.identity.keygen import split_output
from weft.proxy_api.identity import certify_request, decode_certify_response
from weft.proxy_api.wire import WireError

log = logging.getLogger("weft.identity.client")

CERTIFY = "/io.linkerd.proxy.identity.Identity/Certify"
TRUST_ANCHORS_VAR = "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS"
HANDSHAKE_ROUNDS = 8  # an in-memory TLS 1.3 handshake takes three; more means it is stuck


@dataclass(frozen=True)
class Credentials:
    """One issued certificate and the TLS contexts that present it."""

    leaf_der: bytes
    chain_pem: bytes
    server: ssl.SSLContext
    client: ssl.SSLContext
    control: ssl.SSLContext  # towards the control plane (HTTP/2): presents the certificate too
    expiry: datetime


class CertifyError(RuntimeError):
    """The identity service did not give a usable certificate."""


class TrustAnchorsError(ValueError):
    """The trust anchors cannot be used; the message is one line."""


def refresh_delay(now: datetime, expiry: datetime, cfg: IdentityConfig) -> float:
    """Seconds until renewal: 70 % of the remaining lifetime, within the configured bounds."""
    left = (expiry - now).total_seconds()
    return min(max(0.7 * left, cfg.min_refresh), cfg.max_refresh)


def _load_key_and_chain(
    contexts: tuple[ssl.SSLContext, ...], chain_pem: bytes, key_pem: bytes
) -> None:
    """Make ``contexts`` present ``chain_pem`` with its key.

    ``ssl`` loads keys only from files, so the key goes through an anonymous in-memory file
    (``memfd``) that is closed as soon as it is read: it never touches a filesystem.
    """
    fd = os.memfd_create("weft-identity", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain_pem + key_pem)
        path = f"/proc/self/fd/{fd}"
        for ctx in contexts:
            ctx.load_cert_chain(path)
    finally:
        os.close(fd)


def _trust(ctx: ssl.SSLContext, anchors_pem: bytes) -> None:
    try:
        ctx.load_verify_locations(cadata=anchors_pem.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:  # ValueError: empty, or not ASCII
        reason = getattr(exc, "reason", None) or str(exc)
        raise TrustAnchorsError(
            f"{TRUST_ANCHORS_VAR}: no usable PEM certificates ({reason})"
        ) from exc
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT


def tls_contexts(
    chain_pem: bytes, key_pem: bytes, anchors_pem: bytes
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server and client TLS 1.3 contexts presenting ``chain_pem`` and trusting the anchors."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_OPTIONAL  # unmeshed TLS clients have no certificate
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        _trust(ctx, anchors_pem)
    _load_key_and_chain((server, client), chain_pem, key_pem)
    return server, client


def mtls_server_context(chain_pem: bytes, key_pem: bytes, anchors_pem: bytes) -> ssl.SSLContext:
    """A TLS 1.3 server context presenting ``chain_pem`` that requires a client certificate
    chained to the anchors (handshakes without one fail)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_REQUIRED
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    _trust(server, anchors_pem)
    _load_key_and_chain((server,), chain_pem, key_pem)
    return server


def control_context(
    anchors_pem: bytes, chain_pem: bytes | None = None, key_pem: bytes | None = None
) -> ssl.SSLContext:
    """A client context for a control-plane service (gRPC, so ALPN ``h2``): its certificate
    checked against the anchors and its name; presenting ``chain_pem`` when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _trust(ctx, anchors_pem)
    ctx.set_alpn_protocols(["h2"])
    if chain_pem is not None and key_pem is not None:
        _load_key_and_chain((ctx,), chain_pem, key_pem)
    return ctx


def handshake_with_itself(
    server: ssl.SSLContext, client: ssl.SSLContext, name: str
) -> tuple[list[str], datetime]:
    """A TLS handshake between ``server`` and ``client`` in memory, the client expecting
    ``name``: OpenSSL checks each side's certificate as a peer would (chain to the anchors,
    validity now, the name, key usages for serving and for clients). Returns the DNS names and
    the end of validity of the server's certificate, as the client verified it; raises
    :class:`ssl.SSLError`."""
    to_server, from_server, to_client, from_client = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(to_server, from_server, server_side=True)
    client_side = client.wrap_bio(to_client, from_client, server_hostname=name)
    pending = [client_side, server_side]
    for _ in range(HANDSHAKE_ROUNDS):
        for side in list(pending):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                continue
            pending.remove(side)
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if not pending:
            seen: Any = client_side.getpeercert()
            names = [value for kind, value in seen.get("subjectAltName", ()) if kind == "DNS"]
            return names, datetime.fromtimestamp(ssl.cert_time_to_seconds(seen["notAfter"]), UTC)
    raise ssl.SSLError("the in-memory handshake did not finish")


async def new_key_and_csr(name: str) -> tuple[bytes, bytes]:
    """A new key (PKCS#8 PEM) and a CSR (DER) for ``name``, from :mod:`weft.identity.keygen`
    run as a child process; raises :class:`CertifyError` when it fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "weft.identity.keygen",
        name,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines()
        raise CertifyError(
            f"making a key failed: {said[-1] if said else f'exit {proc.returncode}'}"
        )
    try:
        return split_output(out)
    except ValueError as exc:
        raise CertifyError(f"making a key failed: {exc}") from exc


class LocalIdentity:
    """Obtains and renews this proxy's certificate; ``ready`` is set once it has one.

    The key and CSR are made by the first attempt (or given as ``key``: PEM and DER).
    """

    def __init__(
        self,
        cfg: IdentityConfig,
        on_update: Callable[[Credentials], None] | None = None,
        key: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_update = on_update
        self.certify_tls = control_context(cfg.trust_anchors_pem)  # checks the anchors, too
        self.key_pem, self.csr = key if key is not None else (b"", b"")
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
                if not self.csr:
                    started = time.monotonic()
                    self.key_pem, self.csr = await new_key_and_csr(self.name)
                    log.debug("made a key in %.0f ms", (time.monotonic() - started) * 1000)
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
        request = certify_request(cfg.local_name, token, self.csr)
        channel = Channel(
            cfg.svc_addr, self.certify_tls, cfg.svc_name, connect_timeout=cfg.certify_timeout
        )
        started = time.monotonic()
        try:
            answer = await channel.unary(CERTIFY, request, cfg.certify_timeout)
        except RpcError as exc:
            raise CertifyError(str(exc)) from exc
        finally:
            channel.close()
        log.debug("certify took %.0f ms", (time.monotonic() - started) * 1000)
        try:
            response = decode_certify_response(answer)
        except WireError as exc:
            raise CertifyError(f"identity service sent an unreadable answer: {exc}") from exc
        return self._credentials(response.leaf, response.intermediates)

    def _credentials(self, leaf_der: bytes, intermediates: list[bytes]) -> Credentials:
        """The certificate the identity service sent, as contexts, once OpenSSL has checked it
        (as its peers will) with this identity's key and name."""
        chain_pem = "".join(
            ssl.DER_cert_to_PEM_cert(der) for der in (leaf_der, *intermediates)
        ).encode()
        anchors = self.cfg.trust_anchors_pem
        try:
            server, client = tls_contexts(chain_pem, self.key_pem, anchors)
            control = control_context(anchors, chain_pem, self.key_pem)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise CertifyError("identity service sent a certificate for another key") from exc
            raise CertifyError(
                f"identity service sent an unreadable certificate: {exc.reason or exc}"
            ) from exc
        try:
            names, expiry = handshake_with_itself(server, client, self.name)
        except ssl.SSLError as exc:
            reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise CertifyError(
                f"identity service sent a certificate we cannot trust: {reason}"
            ) from exc
        if names != [self.name]:
            shown = ", ".join(repr(n) for n in names) or "no DNS name"
            raise CertifyError(
                f"identity service sent a certificate we cannot trust: it names {shown}, "
                f"not only {self.name!r}"
            )
        return Credentials(leaf_der, chain_pem, server, client, control, expiry)
