"""Errors the proxy itself answers for, mapped to HTTP statuses, gRPC codes and reasons."""

from __future__ import annotations

import errno as errno_mod
import ssl

# gRPC status codes used for synthesized responses.
GRPC_UNAVAILABLE = 14
GRPC_INTERNAL = 13
GRPC_RESOURCE_EXHAUSTED = 8


class ProxyError(Exception):
    """A failure the proxy answers for: status, ``l5d-proxy-error`` reason, gRPC status."""

    def __init__(self, status: int, reason: str, grpc_status: int) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.grpc_status = grpc_status


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
