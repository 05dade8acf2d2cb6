"""``io.linkerd.proxy.identity.Identity/Certify``: a workload token and a CSR in, a certificate out.

The token is checked through the platform (the local runtime's token review, or Kubernetes'
TokenReview); the identity it proves must be the one requested, and the CSR must name exactly
that identity. Everything else is refused with a reason the proxy logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf.timestamp_pb2 import Timestamp

from weft.api import identity_pb2 as pb
from weft.controller.identity.authority import Authority
from weft.identity import certs
from weft.identity.names import identity_for_username
from weft.platform import Platform, PlatformError

log = logging.getLogger("weft.controller.identity")

SERVICE_NAME = "io.linkerd.proxy.identity.Identity"


class Refusal(Exception):
    """A Certify request the service will not sign, with the gRPC code to answer."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class IdentityService:
    """Answers Certify; counts outcomes by gRPC code in :attr:`outcomes`."""

    def __init__(
        self, authority: Authority, platform: Platform, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.authority = authority
        self.platform = platform
        self.clock = clock or (lambda: datetime.now(UTC))
        self.outcomes: Counter[str] = Counter()

    async def check(self, request: pb.CertifyRequest) -> x509.CertificateSigningRequest:
        """The CSR to sign, or :class:`Refusal` saying why not."""
        if not request.identity or not request.token or not request.certificate_signing_request:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT, "identity, token and CSR must all be given"
            )
        cfg = self.authority.config
        try:
            review = await self.platform.verify_token(request.token.decode("utf-8", "replace"))
        except PlatformError as exc:
            raise Refusal(grpc.StatusCode.UNAVAILABLE, f"cannot review the token: {exc}") from exc
        if not review.authenticated:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token not authenticated: {review.reason or 'rejected by the platform'}",
            )
        proven = identity_for_username(review.username, cfg.control_namespace, cfg.trust_domain)
        if proven != request.identity:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f'token is for "{proven or review.username}", not "{request.identity}"',
            )
        try:
            return certs.check_csr(request.certificate_signing_request, request.identity)
        except certs.CsrError as exc:
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if "requested" in str(exc)
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            raise Refusal(code, str(exc)) from exc

    async def certify(
        self, request: pb.CertifyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.CertifyResponse:
        """The ``Certify`` RPC."""
        peer = context.peer()
        try:
            csr = await self.check(request)
            leaf = self.authority.certify(csr, request.identity, self.clock())
        except Refusal as refusal:
            self.outcomes[refusal.code.name] += 1
            log.warning(
                "refused certificate for %r from %s: %s", request.identity, peer, refusal.reason
            )
            await context.abort(refusal.code, refusal.reason)
            raise AssertionError("abort returned") from None  # abort always raises
        except certs.CertError as exc:
            self.outcomes[grpc.StatusCode.FAILED_PRECONDITION.name] += 1
            log.error("cannot issue for %r: %s", request.identity, exc)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise AssertionError("abort returned") from None
        self.outcomes[grpc.StatusCode.OK.name] += 1
        expiry = certs.not_after(leaf)
        log.info(
            "issued %s, valid until %s", request.identity, expiry.isoformat(timespec="seconds")
        )
        valid_until = Timestamp()
        valid_until.FromDatetime(expiry)
        return pb.CertifyResponse(
            leaf_certificate=leaf.public_bytes(Encoding.DER),
            intermediate_certificates=[
                c.public_bytes(Encoding.DER) for c in self.authority.issuer.chain
            ],
            valid_until=valid_until,
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register Certify on ``server``."""
        handler = grpc.unary_unary_rpc_method_handler(
            self.certify,
            request_deserializer=pb.CertifyRequest.FromString,
            response_serializer=pb.CertifyResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, {"Certify": handler}),)
        )


async def keep_issuer_fresh(
    authority: Authority, on_renew: Callable[[], None], period: float = 60.0
) -> None:
    """Renew a generated issuer when due (then call ``on_renew``), checking every ``period``
    seconds at most; repeat anchor and issuer warnings hourly."""
    warned_at: datetime | None = None
    while True:
        now = datetime.now(UTC)
        if authority.maybe_renew(now):
            on_renew()
        if warned_at is None or now - warned_at >= timedelta(hours=1):
            warned_at = now
            for line in authority.warnings(now):
                log.warning("TRUST ATTENTION: %s", line)
        due = authority.renewal_due(now)
        wait = period
        if due is not None:
            wait = max(0.5, min(period, (due - now).total_seconds()))
        await asyncio.sleep(wait)
