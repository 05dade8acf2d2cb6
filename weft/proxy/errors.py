"""Errors the proxy itself answers for, mapped to HTTP statuses, gRPC codes and reasons."""

from __future__ import annotations

import errno as errno_mod
import ssl

# gRPC status codes used for synthesized responses.
GRPC_UNAVAILABLE = 14
GRPC_INTERNAL = 13
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_DEADLINE_EXCEEDED = 4


class ProxyError(Exception):
    """A failure the proxy answers for: status, ``l5d-proxy-error`` reason, gRPC status, and
    the ``error`` label its response is counted with (if any)."""

    def __init__(
        self, status: int, reason: str, grpc_status: int, error: str | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.grpc_status = grpc_status
        self.error = error


def route_timeout(seconds: float) -> ProxyError:
    """A route's timeout expired before the response began: 504, counted as ``timeout``."""
    return ProxyError(
        504, f"request timed out after {seconds:g}s", GRPC_DEADLINE_EXCEEDED, "timeout"
    )


def no_endpoints(name: str) -> ProxyError:
    """The destination exists but had no endpoints within the dispatch timeout."""
    return ProxyError(503, f"no endpoints for {name}", GRPC_UNAVAILABLE)


def connect_error(exc: BaseException, addr: tuple[str, int]) -> ProxyError:
    """Map a failed upstream connect to 502 (refused/unreachable) or 504 (timed out)."""
    where = f"{addr[0]}:{addr[1]}"
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return ProxyError(502, f"TLS handshake with {where} failed: {reason}", GRPC_UNAVAILABLE)
    if isinstance(exc, TimeoutError):
        return ProxyError(504, f"connect timed out after connecting to {where}", GRPC_UNAVAILABLE)
    if isinstance(exc, OSError) and exc.errno in (errno_mod.EHOSTUNREACH, errno_mod.ENETUNREACH):
        return ProxyError(502, f"no route to {where}", GRPC_UNAVAILABLE)
    if isinstance(exc, OSError) and exc.errno == errno_mod.ECONNREFUSED:
        return ProxyError(502, f"connection refused by {where}", GRPC_UNAVAILABLE)
    return ProxyError(502, f"connect to {where} failed: {exc}", GRPC_UNAVAILABLE)


def max_in_flight(limit: int) -> ProxyError:
    """The listener already has ``LINKERD2_PROXY_*_MAX_IN_FLIGHT`` requests in flight: the
    request is shed (503, gRPC UNAVAILABLE, as Linkerd answers ``proxy max-concurrency
    exhausted``)."""
    reason = f"proxy max-concurrency exhausted ({limit} requests in flight)"
    return ProxyError(503, reason, GRPC_UNAVAILABLE)


def streams_exhausted(addr: tuple[str, int]) -> ProxyError:
    """Every HTTP/2 connection to ``addr`` stayed at the server's concurrent stream limit for
    the dispatch timeout."""
    reason = f"no HTTP/2 stream to {addr[0]}:{addr[1]}: the server's stream limit is reached"
    return ProxyError(503, reason, GRPC_UNAVAILABLE)


def malformed_response(reason: str) -> ProxyError:
    """The upstream's HTTP/2 response was malformed (RFC 9113 §8.1.1): not forwarded."""
    return ProxyError(502, f"malformed HTTP/2 response: {reason}", GRPC_INTERNAL)


def upstream_reset(detail: str) -> ProxyError:
    """The upstream connection failed before a response head arrived."""
    return ProxyError(502, f"upstream connection failed: {detail}", GRPC_UNAVAILABLE)


def errno_label(exc: BaseException | None) -> str:
    """The ``errno`` label of ``tcp_close_total``: empty for a clean close."""
    if isinstance(exc, ssl.SSLError):
        return "EPROTO"  # a failed TLS handshake: no errno, but not a clean close either
    if isinstance(exc, OSError) and exc.errno:
        return errno_mod.errorcode.get(exc.errno, str(exc.errno))
    return ""
